#!/bin/sh
# Builds and installs behavry with cargo, then runs `behavry init` (config and first policies).
#
#   ./install.sh
#
# The binary goes where `cargo install` puts binaries (~/.cargo/bin unless CARGO_INSTALL_ROOT or
# CARGO_HOME say otherwise). The policy directory is the one `behavry paths` reports, so
# BEHAVRY_HOME is respected. Existing config and policies are never overwritten.
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

say "behavry is installed: $behavry"
if [ -n "${BEHAVRY_HOME:-}" ]; then
    # The wrapper Claude Code starts must see the same BEHAVRY_HOME.
    say "Note: BEHAVRY_HOME is set; add it to the env of each wrapped server in Claude Code's config."
fi
say ""
# A commented config.toml and the default policies (never overwrites what is there); it ends by
# saying what to do next.
"$behavry" init
