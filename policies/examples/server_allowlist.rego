# Per-server allowlist: each wrapped server may use only the tools listed for it in
# server_allowlist.json (a data document: behavry merges every .json file in a policy directory
# into `data`). A tool not on its server's list is denied; a server with no list can do nothing.
#
# An example in a package of its own; to enforce it, change the package line to
# `package behavry.authz` and install it with its data document:
#   behavry policy add server_allowlist.json
package behavry.examples.server_allowlist

import rego.v1

# The tools `input.resource.server` may call (empty when it has no list).
tools := object.get(object.get(data, "server_allowlist", {}), input.resource.server, [])

allow if input.action.name in tools

deny if not input.action.name in tools

reasons contains sprintf("%s is not on %s's allowlist", [input.action.name, input.resource.server]) if deny
