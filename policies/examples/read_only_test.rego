package behavry.examples.read_only_test

import rego.v1

import data.behavry.examples.read_only

test_looking_is_allowed if {
	every type in ["read", "list", "search", "prompt"] {
		read_only.allow with input as {"action": {"type": type}}
		not read_only.deny with input as {"action": {"type": type}}
	}
}

test_changes_are_denied if {
	every type in ["write", "delete", "execute", "network", "unknown"] {
		read_only.deny with input as {"action": {"type": type}}
		not read_only.allow with input as {"action": {"type": type}}
	}
}

test_a_call_without_a_type_is_denied if {
	read_only.deny with input as {"action": {}}
}

test_the_reason_names_the_call if {
	read_only.reasons == {"read-only mode: fs/write_file is a write call"} with input as {"action": {"type": "write", "tool": "fs/write_file"}}
}
