# Read-only mode: the agent may look at anything and change nothing.
#
# An example in a package of its own, so it can sit beside the others; to enforce it, change
# the package line to `package behavry.authz` and install it alone:
#   sed 's/^package .*/package behavry.authz/' read_only.rego > ro.rego && behavry policy add ro.rego
package behavry.examples.read_only

import rego.v1

looking := {"read", "list", "search", "prompt"}

allow if input.action.type in looking

# Explicit, so the block holds even next to policies that allow more (deny beats allow).
deny if not input.action.type in looking

reasons contains sprintf("read-only mode: %s is a %s call", [input.action.tool, input.action.type]) if deny
