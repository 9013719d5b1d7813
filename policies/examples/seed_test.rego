# The seed page's "Testing the policy", as tests: a developer's read is allowed, a write to
# /prod/ is denied, a delete is escalated. `behavry policy test policies/examples`.
package behavry.seed_test

import rego.v1

test_developer_read_is_allowed if {
	data.behavry.decision.decision == "allow" with input as {
		"agent": {"id": "agent-uuid", "name": "my-agent", "role": "developer", "risk_tier": "low"},
		"action": {"type": "read", "tool": "filesystem/read_file"},
		"resource": {"path": "/home/dev/notes.txt", "server": "filesystem"},
	}
}

test_write_to_prod_is_denied if {
	data.behavry.decision.decision == "deny" with input as {
		"agent": {"id": "agent-uuid", "name": "my-agent", "role": "developer", "risk_tier": "low"},
		"action": {"type": "write", "tool": "filesystem/write_file"},
		"resource": {"path": "/prod/config.yaml", "server": "filesystem"},
	}
}

test_delete_is_escalated if {
	data.behavry.decision.decision == "escalate" with input as {
		"agent": {"id": "agent-uuid", "name": "my-agent", "role": "developer", "risk_tier": "low"},
		"action": {"type": "delete", "tool": "filesystem/delete_file"},
		"resource": {"path": "/home/dev/old.txt", "server": "filesystem"},
	}
}
