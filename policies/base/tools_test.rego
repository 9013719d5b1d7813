# Tests for tools.rego: `behavry policy test policies/base`.
package behavry.tools_test

import rego.v1

read(tool) := {
	"action": {"type": "read", "tool": "fs/read_file", "name": "read_file"},
	"resource": {"server": "fs", "paths": []},
	"tool": tool,
}

test_a_trusted_tool_is_decided_as_before if {
	data.behavry.decision.decision == "allow" with input as read({"changed": false, "changes": []})
	data.behavry.decision.decision == "allow" with input as read({"changed": false, "new": true})
}

test_a_tool_without_pins_is_decided_as_before if {
	data.behavry.decision.decision == "allow" with input as read(null)
}

test_a_changed_tool_waits_for_a_person_and_says_what_changed if {
	d := data.behavry.decision with input as read({"changed": true, "changes": ["description", "schema"]})
	d.decision == "escalate"
	some reason in d.reasons
	contains(reason, "fs/read_file changed its description and schema since it was trusted")
	contains(reason, "`behavry tools trust fs read_file`")
}
