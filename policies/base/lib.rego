# Helpers for the base policy: what counts as a secret, behavry's own files, the project.
# A package of their own, so their names never collide with rules you add to behavry.authz.
package behavry.base

import rego.v1

# Directories whose contents are credentials, wherever they are (usually in your home).
secret_dirs := {".ssh", ".aws", ".gnupg", ".azure", ".kube", ".password-store"}

# Places that are credential stores by their full path (keychains, keyrings, cloud SDKs).
secret_places := {"/Library/Keychains/", "/.local/share/keyrings/", "/.config/gcloud/", "/.docker/config.json/"}

# Files that hold credentials by name alone.
secret_files := {".netrc", ".git-credentials", ".pgpass", ".pypirc", ".npmrc"}

# Call types that only look.
reading := {"read", "list", "search"}

segments(path) := [s | some s in split(path, "/"); s != ""]

basename(path) := b if {
	parts := segments(path)
	count(parts) > 0
	b := parts[count(parts) - 1]
}

# `path` is `dir` or inside it (by whole path components: /a/bc is not under /a/b).
under(path, dir) if path == trim_suffix(dir, "/")

under(path, dir) if startswith(path, concat("", [trim_suffix(dir, "/"), "/"]))

secret(path) if {
	some s in segments(path)
	s in secret_dirs
}

secret(path) if {
	some place in secret_places
	contains(concat("", [path, "/"]), place)
}

secret(path) if basename(path) in secret_files

# .env, .env.local, .envrc …
secret(path) if startswith(basename(path), ".env")

# macOS keychain files outside the usual folder.
secret(path) if endswith(basename(path), ".keychain")

secret(path) if endswith(basename(path), ".keychain-db")

# SSH private keys copied out of ~/.ssh.
secret(path) if regex.match(`^id_(rsa|dsa|ecdsa|ed25519)(_sk)?$`, basename(path))

# behavry's config, policies and audit database (input.behavry.protected): never the agent's.
protected(path) if {
	some dir in input.behavry.protected
	under(path, dir)
}

# Inside the project Claude Code was started in (CLAUDE_PROJECT_DIR).
in_project(path) if {
	dir := input.session.project_dir
	dir != ""
	under(path, dir)
}
