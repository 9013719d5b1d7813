# Facts about the call for the base policy: is its path a secret, behavry's own, in the project?
# A package of their own, so their names never collide with rules you add to behavry.authz.
#
# Each fact is a rule, not a function: regorus evaluates a rule once per decision and reuses its
# value, where a function runs again for every rule that calls it. base.rego names them by full
# path (`data.behavry.base.secret`): through `import data.behavry.base`, regorus would evaluate
# every rule of this package to look up one.
package behavry.base

import rego.v1

# What makes a path a secret, as one pattern: a single regex match costs a fraction of a rule per
# kind of secret. `(?x)`: spaces are ignored and `#` starts a comment.
secret_pattern := `(?x)
	# Directories whose contents are credentials, wherever they are (usually in your home).
	(^|/) (\.ssh | \.aws | \.gnupg | \.azure | \.kube | \.password-store) (/|$)
	# Credential stores by their full path (keychains, keyrings, cloud SDKs).
	| /Library/Keychains (/|$) | /\.local/share/keyrings (/|$) | /\.config/gcloud (/|$)
	| /\.docker/config\.json (/|$)
	# Files that hold credentials by name alone; .env, .env.local, .envrc …; macOS keychain files
	# outside the usual folder; SSH private keys copied out of ~/.ssh.
	| (^|/) (
		\.netrc | \.git-credentials | \.pgpass | \.pypirc | \.npmrc
		| \.env[^/]*
		| [^/]*\.keychain | [^/]*\.keychain-db
		| id_(rsa|dsa|ecdsa|ed25519)(_sk)?
	) /*$
`

# The call only looks (read, list, search).
reading if input.action.type in {"read", "list", "search"}

# The path decided on: each path a call names, in turn. With a "/" after it, `startswith` tells
# whether it is a directory or inside it by whole components (/a/bc is not under /a/b).
path_slash := concat("", [input.resource.path, "/"])

secret if regex.match(secret_pattern, input.resource.path)

# behavry's config, policies and audit database (input.behavry.protected): never the agent's.
protected if {
	some dir in input.behavry.protected
	startswith(path_slash, concat("", [trim_suffix(dir, "/"), "/"]))
}

# Inside the project Claude Code was started in (CLAUDE_PROJECT_DIR).
in_project if {
	dir := input.session.project_dir
	dir != ""
	startswith(path_slash, concat("", [trim_suffix(dir, "/"), "/"]))
}
