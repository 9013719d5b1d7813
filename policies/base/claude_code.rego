# behavry's default policy for Claude Code's own tools (Bash, Read, Write, Edit, WebFetch, …),
# which `behavry hook` decides as `claude-code/<tool>`. Only calls whose tool starts with
# `claude-code/` are touched here: MCP decisions do not change.
#
#   call                                                              decision
#   Read, Glob, Grep, LS inside the project                           allow
#   Read, Glob, Grep, LS outside the project                          escalate (ask)
#   Write, Edit, MultiEdit, NotebookEdit inside the project            allow
#   Write, Edit, … outside the project                                escalate
#   Bash: a harmless read-only command, paths inside the project       allow
#   Bash: anything else                                               escalate
#   Bash: rm -r of /, ~ or outside the project; mkfs; dd of=/dev/…;
#         a download piped into a shell                               deny
#   Bash: anything naming behavry's files, database or approver        deny
#   Write/Edit of Claude Code's settings.json, `behavry hook uninstall` deny (they switch this off)
#   WebFetch of an allowed domain; WebSearch limited to them           allow
#   WebFetch, WebSearch otherwise                                     escalate
#
# Secrets and behavry's own files are denied by base.rego as for MCP calls (the hook hands the
# paths a Bash command names to the policy, so `cat ~/.ssh/id_rsa` is a call on ~/.ssh/id_rsa).
#
# Tune it without editing this file: a data document in the policy directory, e.g.
# `claude_code.json`: {"claude_code": {"read_only_commands": ["rg", "tree"],
#                                      "web_domains": ["docs.example.com"]}}
# adds to the lists below. Escalations cannot be relaxed from another file (escalate beats
# allow): edit this one for that.
package behavry.claude_code

import rego.v1

# Commands that only look. Allowed alone (no pipes, redirections, `;`, `&&`, substitutions) and
# with every path they name inside the project.
claude_code_read_only_commands := {
	"ls", "pwd", "cat", "head", "tail", "wc", "echo", "which", "whoami", "date", "file",
	"stat", "du", "df", "uname", "env", "printenv", "tree", "grep", "rg", "diff", "cmp",
	"basename", "dirname", "realpath", "true", "false", "id", "hostname",
} | {c | some c in object.get(data, ["claude_code", "read_only_commands"], [])}

# `git <subcommand>` that only looks.
claude_code_read_only_git := {"status", "log", "diff", "show", "branch", "blame", "rev-parse", "remote", "ls-files", "describe"}

# WebFetch may read these hosts (and their subdomains) without asking.
claude_code_web_domains := {
	"docs.rs", "doc.rust-lang.org", "crates.io", "developer.mozilla.org", "docs.python.org",
	"pkg.go.dev", "nodejs.org", "docs.github.com",
} | {d | some d in object.get(data, ["claude_code", "web_domains"], [])}

# --- facts ---------------------------------------------------------------------------------

claude_code_tool := input.action.name if startswith(input.action.tool, "claude-code/")

claude_code_looking if claude_code_tool in {"Read", "NotebookRead", "Glob", "Grep", "LS"}

claude_code_editing if claude_code_tool in {"Write", "Edit", "MultiEdit", "NotebookEdit"}

claude_code_command := input.action.arguments.command if claude_code_tool == "Bash"

# `path` is the project directory or inside it (whole components: /a/bc is not under /a/b).
claude_code_in_project(path) if {
	dir := trim_suffix(input.session.project_dir, "/")
	dir != ""
	claude_code_under(path, dir)
}

claude_code_under(path, dir) if path == dir

claude_code_under(path, dir) if startswith(path, concat("", [dir, "/"]))

# Every path the call names is inside the project (true when it names none).
claude_code_all_in_project if {
	every path in object.get(input.resource, "paths", []) {
		claude_code_in_project(path)
	}
}

claude_code_some_outside_project if {
	some path in object.get(input.resource, "paths", [])
	not claude_code_in_project(path)
}

# One simple command: no pipes, lists, redirections, substitutions, globs or line breaks.
claude_code_simple(command) if not regex.match("[;&|<>`$*?\\n\\\\]|\\(|\\)", command)

claude_code_words(command) := [w | some w in split(trim_space(command), " "); w != ""]

claude_code_harmless if {
	claude_code_simple(claude_code_command)
	words := claude_code_words(claude_code_command)
	words[0] in claude_code_read_only_commands
	claude_code_all_in_project
}

claude_code_harmless if {
	claude_code_simple(claude_code_command)
	words := claude_code_words(claude_code_command)
	words[0] == "git"
	words[1] in claude_code_read_only_git
	claude_code_all_in_project
}

# rm with -r/-R/--recursive (in any spelling of the flags).
claude_code_rm_recursive if regex.match(`(^|[[:space:];&|(])(sudo[[:space:]]+)?rm[[:space:]]+([^;&|]*[[:space:]])?(-[a-zA-Z]*[rR][a-zA-Z]*|--recursive)([[:space:]]|$)`, claude_code_command)

claude_code_destructive contains "rm -r of / or ~" if {
	claude_code_rm_recursive
	regex.match(`[[:space:]](/|~|~/|\$HOME|\$\{HOME\}|/\*|~/\*)([[:space:]]|$|;|&|\|)`, concat("", [claude_code_command, " "]))
}

claude_code_destructive contains "rm -r outside the project" if {
	claude_code_rm_recursive
	claude_code_some_outside_project
}

claude_code_destructive contains "mkfs" if regex.match(`(^|[[:space:];&|(])(sudo[[:space:]]+)?mkfs(\.[a-z0-9]+)?([[:space:]]|$)`, claude_code_command)

claude_code_destructive contains "dd onto a device" if regex.match(`(^|[[:space:];&|(])(sudo[[:space:]]+)?dd[[:space:]][^;&|]*[[:space:]]of=/dev/`, claude_code_command)

claude_code_destructive contains "a download piped into a shell" if {
	regex.match(`(curl|wget)[^;&]*\|[[:space:]]*(sudo[[:space:]]+)?(env[[:space:]]+)?(sh|bash|zsh|dash|ksh|fish|python3?|perl|ruby|node)([^a-zA-Z0-9_-]|$)`, claude_code_command)
}

claude_code_destructive contains "a download run by a shell" if {
	regex.match(`(sh|bash|zsh|dash)[[:space:]]+(-c[[:space:]]+)?["']?[[:space:]]*\$\([[:space:]]*(curl|wget)`, claude_code_command)
}

claude_code_destructive contains "a download run by a shell" if {
	regex.match(`(sh|bash|zsh|dash)[[:space:]]+<\([[:space:]]*(curl|wget)`, claude_code_command)
}

# The command reaches behavry itself: its approver, its hook, its database, its directories.
claude_code_touches_behavry contains "runs behavry's approver" if regex.match(`behavry[^;&|]*[^a-zA-Z0-9_-]approve([^a-zA-Z0-9_-]|$)`, claude_code_command)

claude_code_touches_behavry contains "removes behavry's hooks" if regex.match(`behavry[^;&|]*[^a-zA-Z0-9_-]hook[^;&|]*[^a-zA-Z0-9_-]uninstall([^a-zA-Z0-9_-]|$)`, claude_code_command)

claude_code_touches_behavry contains "opens behavry's audit database" if contains(claude_code_command, "behavry.db")

claude_code_touches_behavry contains "names behavry's own directory" if {
	some dir in object.get(input, ["behavry", "protected"], [])
	dir != ""
	contains(claude_code_command, dir)
}

# Claude Code's settings hold the hook entries: editing them switches behavry off.
claude_code_settings_file(path) if regex.match(`/\.claude/settings(\.local)?\.json$`, path)

claude_code_edits_settings if {
	claude_code_editing
	some path in object.get(input.resource, "paths", [])
	claude_code_settings_file(path)
}

claude_code_edits_settings if {
	claude_code_command
	regex.match(`\.claude/settings(\.local)?\.json`, claude_code_command)
	not claude_code_harmless
}

# regorus's regex has no Unicode classes: `\s`, `\w` and `\b` never match, so the patterns in
# this file spell them out ([[:space:]], [^a-zA-Z0-9_-]).

# The host of a URL, without user info or port, lowercase.
claude_code_host(url) := lower(m[1]) if {
	m := regex.find_all_string_submatch_n(`^[hH][tT][tT][pP][sS]?://(?:[^/?#@]*@)?([^/?#:]+)`, url, 1)[0]
}

claude_code_allowed_host(host) if host in claude_code_web_domains

claude_code_allowed_host(host) if {
	some domain in claude_code_web_domains
	endswith(host, concat("", [".", domain]))
}

claude_code_web_allowed if {
	claude_code_tool == "WebFetch"
	claude_code_allowed_host(claude_code_host(input.action.arguments.url))
}

claude_code_web_allowed if {
	claude_code_tool == "WebSearch"
	domains := object.get(input.action.arguments, "allowed_domains", [])
	count(domains) > 0
	every d in domains {
		claude_code_allowed_host(lower(d))
	}
}

# --- decisions -----------------------------------------------------------------------------

allow if {
	claude_code_looking
	claude_code_all_in_project
}

escalate if {
	claude_code_looking
	claude_code_some_outside_project
}

reasons contains sprintf("%s outside the project (%s) needs approval", [claude_code_tool, input.session.project_dir]) if {
	claude_code_looking
	claude_code_some_outside_project
}

allow if {
	claude_code_editing
	claude_code_all_in_project
	count(object.get(input.resource, "paths", [])) > 0
}

escalate if {
	claude_code_editing
	not claude_code_all_in_project
}

escalate if {
	claude_code_editing
	count(object.get(input.resource, "paths", [])) == 0
}

reasons contains sprintf("%s outside the project needs approval", [claude_code_tool]) if {
	claude_code_editing
	not claude_code_all_in_project
}

allow if claude_code_harmless

escalate if {
	claude_code_command
	not claude_code_harmless
}

reasons contains "Bash commands need approval unless they are on the read-only list" if {
	claude_code_command
	not claude_code_harmless
}

deny if count(claude_code_destructive) > 0

reasons contains sprintf("destructive command (%s); run it yourself if you mean it", [concat(", ", sort(claude_code_destructive))]) if {
	count(claude_code_destructive) > 0
}

deny if count(claude_code_touches_behavry) > 0

reasons contains sprintf("the command %s; agents may not reach behavry itself", [concat(", ", sort(claude_code_touches_behavry))]) if {
	count(claude_code_touches_behavry) > 0
}

deny if claude_code_edits_settings

reasons contains "Claude Code's settings hold behavry's hooks; only a person may change them" if claude_code_edits_settings

allow if claude_code_web_allowed

escalate if {
	claude_code_tool in {"WebFetch", "WebSearch"}
	not claude_code_web_allowed
}

reasons contains sprintf("%s outside the allowed domains needs approval", [claude_code_tool]) if {
	claude_code_tool in {"WebFetch", "WebSearch"}
	not claude_code_web_allowed
}
