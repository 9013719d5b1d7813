#!/bin/sh
# Builds and installs behavry with cargo, then gives it a first policy if it has none.
#
#   ./install.sh
#
# The binary goes where `cargo install` puts binaries (~/.cargo/bin unless CARGO_INSTALL_ROOT or
# CARGO_HOME say otherwise). The policy directory is the one `behavry paths` reports, so
# BEHAVRY_HOME is respected. Existing policies are never overwritten.
set -eu

say() { printf '%s\n' "$*"; }
warn() { printf 'install.sh: warning: %s\n' "$*" >&2; }
die() {
    printf 'install.sh: %s\n' "$*" >&2
    exit 1
}

repo=$(cd "$(dirname "$0")" && pwd)

if ! command -v cargo >/dev/null 2>&1; then
    die "cargo was not found on PATH. Install Rust from https://rustup.rs, open a new shell (or run: . \"\$HOME/.cargo/env\"), then run ./install.sh again."
fi

say "Building and installing behavry (cargo install --locked) ..."
cargo install --locked --path "$repo"

bin_dir="${CARGO_INSTALL_ROOT:-${CARGO_HOME:-$HOME/.cargo}}/bin"
behavry="$bin_dir/behavry"
if [ ! -x "$behavry" ]; then
    # An install root set in cargo's config.toml; fall back to whatever PATH finds.
    behavry=$(command -v behavry 2>/dev/null) ||
        die "cargo install finished but no behavry binary was found in $bin_dir or on PATH."
    bin_dir=$(dirname "$behavry")
fi
case ":$PATH:" in
*":$bin_dir:"*) ;;
*) warn "$bin_dir is not on your PATH; add it (e.g. export PATH=\"$bin_dir:\$PATH\" in your shell profile) so your MCP client can run behavry." ;;
esac

policy_dir=$("$behavry" paths | sed -n 's/^policies: *//p')
[ -n "$policy_dir" ] || die "could not read the policy directory from \`$behavry paths\`."

# The policy directory is behavry's rulebook: only its owner should be able to change it.
if [ ! -d "$policy_dir" ]; then
    (umask 077 && mkdir -p "$policy_dir")
    chmod 700 "$policy_dir"
else
    chmod go-w "$policy_dir"
fi

if [ -n "$(find "$policy_dir" -name '*.rego' -type f 2>/dev/null | head -n 1)" ]; then
    say "Policies already present in $policy_dir; left as they are."
else
    seeded=0
    for src in "$repo"/policies/base/*.rego; do
        [ -f "$src" ] || continue
        dest="$policy_dir/$(basename "$src")"
        if [ -e "$dest" ]; then
            continue
        fi
        cp "$src" "$dest"
        chmod 600 "$dest"
        seeded=$((seeded + 1))
    done
    if [ "$seeded" -eq 0 ]; then
        dest="$policy_dir/seed.rego"
        if [ ! -e "$dest" ]; then
            cp "$repo/policies/examples/seed.rego" "$dest"
            chmod 600 "$dest"
            seeded=1
        fi
    fi
    say "Seeded $policy_dir with $seeded policy file(s):"
    for f in "$policy_dir"/*.rego; do
        if [ -f "$f" ]; then
            say "  $f"
        fi
    done
fi

say ""
say "behavry is installed: $behavry"
say ""
say "Next: put it in front of an MCP server in Claude Code, e.g."
if [ -n "${BEHAVRY_HOME:-}" ]; then
    # The wrapper Claude Code starts must see the same BEHAVRY_HOME (as an absolute path).
    home=$(dirname "$policy_dir")
    case "$home" in
    *[!A-Za-z0-9_./-]*) home="'$home'" ;;
    esac
    say "  claude mcp add fs -- env BEHAVRY_HOME=$home behavry wrap --name fs -- npx -y @modelcontextprotocol/server-filesystem ~/code"
else
    say "  claude mcp add fs -- behavry wrap --name fs -- npx -y @modelcontextprotocol/server-filesystem ~/code"
fi
say "then see every decision it made with:"
say "  behavry log"
