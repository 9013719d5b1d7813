# Tools whose definition changed since they were trusted ("rug pull"): behavry pins every tool a
# server lists (input.tool, see `behavry tools`). A tool that now describes itself differently,
# takes other arguments or claims other hints may now do something else than what was trusted,
# so each call to it waits for a person until someone trusts the new definition.
package behavry.authz

import rego.v1

escalate if input.tool.changed

reasons contains msg if {
	input.tool.changed
	server := input.resource.server
	name := input.action.name
	msg := sprintf(
		"%s changed its %s since it was trusted; review with `behavry tools diff %s %s`, accept with `behavry tools trust %s %s`",
		[input.action.tool, concat(" and ", input.tool.changes), server, name, server, name],
	)
}
