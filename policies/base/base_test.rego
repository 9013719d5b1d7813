# Tests for the base policy: `behavry policy test policies/base`.
package behavry.base_test

import rego.v1

behavry_dirs := {
	"config_dir": "/home/dev/.config/behavry",
	"data_dir": "/home/dev/.local/share/behavry",
	"policy_dirs": ["/home/dev/.config/behavry/policies"],
	"protected": ["/home/dev/.config/behavry", "/home/dev/.local/share/behavry"],
}

# An input for a call of `type` on `path`, in a session started in /home/dev/code.
call(type, path) := {
	"agent": {"role": "developer"},
	"action": {"type": type, "tool": "fs/some_tool"},
	"resource": {"path": path, "paths": [path], "server": "fs"},
	"session": {"project_dir": "/home/dev/code"},
	"behavry": behavry_dirs,
}

decision(type, path) := d if {
	d := data.behavry.decision.decision with input as call(type, path)
}

test_reads_lists_searches_are_allowed if {
	decision("read", "/etc/hosts") == "allow"
	decision("list", "/home/dev") == "allow"
	decision("search", "/home/dev/code") == "allow"
}

test_prompts_are_allowed if {
	data.behavry.decision.decision == "allow" with input as {"action": {"type": "prompt", "tool": "fs/summarise"}}
}

test_writes_in_the_project_are_allowed if {
	decision("write", "/home/dev/code/src/main.rs") == "allow"
	decision("write", "/home/dev/code") == "allow"
}

test_writes_outside_the_project_are_escalated if {
	decision("write", "/home/dev/other/x.txt") == "escalate"
	# A sibling whose name starts like the project is not in it.
	decision("write", "/home/dev/code-old/x.txt") == "escalate"
	"writes outside the project (/home/dev/code) need approval" in data.behavry.decision.reasons with input as call("write", "/tmp/x")
}

test_writes_without_a_project_are_escalated if {
	inp := {"action": {"type": "write", "tool": "fs/write_file"}, "resource": {"path": "/home/dev/code/a"}}
	data.behavry.decision.decision == "escalate" with input as inp
	"writes need approval when no project directory is known (CLAUDE_PROJECT_DIR is unset)" in data.behavry.decision.reasons with input as inp
}

test_writes_without_a_path_are_escalated if {
	data.behavry.decision.decision == "escalate" with input as {"action": {"type": "write", "tool": "git/commit"}, "session": {"project_dir": "/home/dev/code"}}
}

test_deletes_executes_network_and_unknown_are_escalated if {
	decision("delete", "/home/dev/code/old.txt") == "escalate"
	decision("execute", "/home/dev/code") == "escalate"
	decision("network", "https://example.com/") == "escalate"
	decision("unknown", "/home/dev/code/x") == "escalate"
}

test_secrets_cannot_be_changed if {
	decision("write", "/home/dev/.ssh/authorized_keys") == "deny"
	decision("write", "/home/dev/.aws/credentials") == "deny"
	decision("delete", "/home/dev/.gnupg/pubring.kbx") == "deny"
	decision("write", "/home/dev/code/.env") == "deny"
	decision("write", "/home/dev/code/.env.local") == "deny"
	decision("write", "/home/dev/Library/Keychains/login.keychain-db") == "deny"
	decision("write", "/home/dev/.local/share/keyrings/login.keyring") == "deny"
	decision("write", "/home/dev/code/backup/id_ed25519") == "deny"
	decision("execute", "/home/dev/.ssh") == "deny"
	decision("write", "/home/dev/code/.git-credentials") == "deny"
	decision("write", "/home/dev/.config/gcloud/credentials.db") == "deny"
	decision("write", "/home/dev/.docker/config.json") == "deny"
	decision("write", "/home/dev/code/keys/id_ecdsa_sk") == "deny"
	decision("write", "/home/dev/code/login.keychain") == "deny"
	decision("write", "/home/dev/.kube/config") == "deny"
	"/home/dev/.ssh/config holds credentials; only a person may change it" in data.behavry.decision.reasons with input as call("write", "/home/dev/.ssh/config")
}

test_reading_secrets_is_escalated if {
	decision("read", "/home/dev/.ssh/id_rsa") == "escalate"
	decision("read", "/home/dev/.aws/credentials") == "escalate"
	decision("list", "/home/dev/.ssh") == "escalate"
	decision("read", "/home/dev/code/.env") == "escalate"
}

test_look_alikes_are_not_secrets if {
	decision("write", "/home/dev/code/environment.md") == "allow"
	decision("write", "/home/dev/code/docs/ssh.md") == "allow"
	decision("write", "/home/dev/code/id_rsa.pub") == "allow"
	decision("write", "/home/dev/code/id_rsa_old") == "allow"
	decision("write", "/home/dev/code/my.ssh/x") == "allow"
	decision("write", "/home/dev/code/.docker/config.json.bak") == "allow"
	decision("write", "/home/dev/code/netrc") == "allow"
	decision("write", "/home/dev/code/keychain-notes.md") == "allow"
}

test_behavrys_own_files_are_off_limits if {
	decision("write", "/home/dev/.config/behavry/policies/base.rego") == "deny"
	decision("read", "/home/dev/.config/behavry/config.toml") == "deny"
	decision("delete", "/home/dev/.local/share/behavry/behavry.db") == "deny"
	decision("write", "/home/dev/.config/behavry") == "deny"
	# Only whole path components count.
	decision("read", "/home/dev/.config/behavry-other/x") == "allow"
}

test_behavry_dirs_inside_the_project_are_still_protected if {
	inp := object.union(call("write", "/home/dev/code/.behavry/behavry.db"), {"behavry": {"protected": ["/home/dev/code/.behavry"]}})
	data.behavry.decision.decision == "deny" with input as inp
}

# Calls to a read tool as tool pinning describes it (input.tool).
tool_call(tool) := {
	"action": {"type": "read", "tool": "fs/read_file", "name": "read_file"},
	"resource": {"server": "fs", "paths": []},
	"tool": tool,
}

test_a_trusted_tool_is_decided_as_before if {
	data.behavry.decision.decision == "allow" with input as tool_call({"changed": false, "changes": []})
	data.behavry.decision.decision == "allow" with input as tool_call({"changed": false, "new": true})
}

test_a_tool_without_pins_is_decided_as_before if {
	data.behavry.decision.decision == "allow" with input as tool_call(null)
}

test_a_changed_tool_waits_for_a_person_and_says_what_changed if {
	d := data.behavry.decision with input as tool_call({"changed": true, "changes": ["description", "schema"]})
	d.decision == "escalate"
	some reason in d.reasons
	contains(reason, "fs/read_file changed its description and schema since it was trusted")
	contains(reason, "`behavry tools trust fs read_file`")
}
