#!/usr/bin/env bash
# Installs Debian's `prometheus` package (server and promtool) into .tools/prometheus/ without
# starting any system service, for the observability tests (tests/tests/observability_*.rs).
#
# Idempotent: does nothing when the binaries are already there. Prints the two paths as
# PROMETHEUS_BIN=... and PROMTOOL_BIN=... lines, so a caller can `eval "$(scripts/install-prometheus.sh)"`.
# The tests also look in .tools/prometheus/usr/bin/ on their own.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dest="${PROMETHEUS_TOOLS_DIR:-$repo_root/.tools/prometheus}"
bin_dir="$dest/usr/bin"

if [[ -x "$bin_dir/prometheus" && -x "$bin_dir/promtool" ]]; then
    echo "PROMETHEUS_BIN=$bin_dir/prometheus"
    echo "PROMTOOL_BIN=$bin_dir/promtool"
    exit 0
fi

work="$(mktemp -d)"
chmod 755 "$work" # lets the _apt user write the download (no "unsandboxed" warning)
trap 'rm -rf "$work"' EXIT

# `apt-get download` needs current package lists: refresh them when the package is unknown, or
# when the download fails (stale lists name a version the mirror no longer has).
if ! apt-cache show prometheus >/dev/null 2>&1; then
    apt-get update -qq >&2
fi
if ! (cd "$work" && apt-get download -q prometheus >&2); then
    apt-get update -qq >&2
    (cd "$work" && apt-get download -q prometheus >&2)
fi

deb="$(find "$work" -maxdepth 1 -name 'prometheus_*.deb' | head -n 1)"
if [[ -z "$deb" ]]; then
    echo "install-prometheus: apt-get download produced no prometheus .deb" >&2
    exit 1
fi
mkdir -p "$dest"
dpkg -x "$deb" "$dest"

"$bin_dir/prometheus" --version >&2
echo "PROMETHEUS_BIN=$bin_dir/prometheus"
echo "PROMTOOL_BIN=$bin_dir/promtool"
