package behavry.examples.server_allowlist_test

import rego.v1

import data.behavry.examples.server_allowlist

call(server, tool) := {"action": {"name": tool, "tool": concat("/", [server, tool])}, "resource": {"server": server}}

test_listed_tools_are_allowed if {
	server_allowlist.allow with input as call("filesystem", "read_file")
	not server_allowlist.deny with input as call("filesystem", "read_file")
	server_allowlist.allow with input as call("github", "get_issue")
}

test_unlisted_tools_are_denied if {
	server_allowlist.deny with input as call("filesystem", "write_file")
	not server_allowlist.allow with input as call("filesystem", "write_file")
	server_allowlist.reasons == {"write_file is not on filesystem's allowlist"} with input as call("filesystem", "write_file")
}

test_a_tool_listed_for_another_server_is_denied if {
	server_allowlist.deny with input as call("github", "read_file")
}

test_servers_without_a_list_are_denied if {
	server_allowlist.deny with input as call("slack", "post_message")
}

test_the_list_comes_from_data if {
	server_allowlist.allow with input as call("slack", "post_message")
		with data.server_allowlist as {"slack": ["post_message"]}
}
