# behavry's default policy for a developer machine.
#
# Looking is free; changes inside the project are free; anything else that changes the machine
# waits for a person (`behavry approve`); secrets and behavry's own files are off limits.
#
#   call                                                          decision
#   read, list, search (resources/read), prompts/get              allow
#   write inside the project (CLAUDE_PROJECT_DIR)                 allow
#   write outside the project, or when no project is known        escalate
#   delete, execute, network, or a tool of unknown type           escalate
#   read of a secret (~/.ssh, ~/.aws, .env*, keychains, …)        escalate
#   anything else on a secret (write, delete, …)                  deny
#   anything on behavry's config, policies or database            deny
#   a tool whose definition changed since it was trusted         escalate
#
# Deny beats escalate beats allow, so the last rows win over the first. A call that names several
# paths is decided once per path and the strictest answer wins. The facts about the call (secret,
# protected, in the project) are rules in lib.rego.
package behavry.authz

import rego.v1

# The facts are named by their full path, not through `import data.behavry.base`: regorus evaluates
# every rule of an imported package when one is looked up through the alias.

allow if input.action.type in {"read", "list", "search", "prompt"}

allow if {
	input.action.type == "write"
	data.behavry.base.in_project
}

escalate if input.action.type in {"delete", "unknown"}

# Claude Code's own Bash and web tools are judged by claude_code.rego (which escalates them unless
# a command or domain is known to be harmless).
escalate if {
	input.action.type in {"execute", "network"}
	not startswith(input.action.tool, "claude-code/")
}

escalate if {
	input.action.type == "write"
	not data.behavry.base.in_project
}

escalate if {
	data.behavry.base.reading
	data.behavry.base.secret
}

deny if {
	not data.behavry.base.reading
	data.behavry.base.secret
}

deny if data.behavry.base.protected

reasons contains sprintf("%s is behavry's own file (config, policies or audit log); agents may not touch it", [input.resource.path]) if {
	data.behavry.base.protected
}

reasons contains sprintf("%s holds credentials; only a person may change it", [input.resource.path]) if {
	not data.behavry.base.reading
	data.behavry.base.secret
}

reasons contains sprintf("%s holds credentials; reading it needs approval", [input.resource.path]) if {
	data.behavry.base.reading
	data.behavry.base.secret
}

reasons contains sprintf("%s calls need approval", [input.action.type]) if {
	input.action.type == "delete"
}

reasons contains sprintf("%s calls need approval", [input.action.type]) if {
	input.action.type in {"execute", "network"}
	not startswith(input.action.tool, "claude-code/")
}

reasons contains sprintf("%s does not say what it does (unknown type), so it needs approval", [input.action.tool]) if {
	input.action.type == "unknown"
}

reasons contains sprintf("writes outside the project (%s) need approval", [input.session.project_dir]) if {
	input.action.type == "write"
	input.session.project_dir != ""
	not data.behavry.base.in_project
}

reasons contains "writes need approval when no project directory is known (CLAUDE_PROJECT_DIR is unset)" if {
	input.action.type == "write"
	not input.session.project_dir
}

# A tool whose definition changed since it was trusted ("rug pull"): behavry pins every tool a
# server lists (input.tool, see `behavry tools`). A tool that now describes itself differently,
# takes other arguments or claims other hints may do something else than what was trusted, so
# each call to it waits for a person until someone trusts the new definition.
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

# Claude Code's own tools (`behavry hook`) are judged by claude_code.rego, in a package of its
# own: an MCP call pays for these four checks, not for every rule of that file.
allow if {
	startswith(input.action.tool, "claude-code/")
	data.behavry.claude_code.allow
}

escalate if {
	startswith(input.action.tool, "claude-code/")
	data.behavry.claude_code.escalate
}

deny if {
	startswith(input.action.tool, "claude-code/")
	data.behavry.claude_code.deny
}

reasons contains reason if {
	startswith(input.action.tool, "claude-code/")
	some reason in data.behavry.claude_code.reasons
}
