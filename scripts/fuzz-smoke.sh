#!/usr/bin/env bash
# The short, bounded fuzz run of CI: builds the cargo-fuzz targets of coordinator/fuzz/ and runs
# each for FUZZ_SECONDS (default 20) from its committed seed corpus. Any crash, hang (a call over
# its 1 s timeout, or an input over libFuzzer's -timeout) or out-of-memory fails the script; the
# input that did it is left in coordinator/fuzz/artifacts/<target>/. The long runs and their
# results are in docs/RELIABILITY.md ("Fuzzing").
#
# Installs cargo-fuzz when it is missing. The build is `--dev` (no optimization but for the GP's
# linear algebra, SQLite and tuner, see coordinator/fuzz/Cargo.toml) with `--sanitizer none`: it
# builds in far less time than the optimized one, and a 20-second run needs coverage, not
# speed. FUZZ_BUILD="-O" selects the optimized build the long runs use.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root/coordinator"
seconds="${FUZZ_SECONDS:-20}"
read -r -a build <<< "${FUZZ_BUILD:---dev}"
targets=(spec_toml client_rpc agent_rpc config_toml)

if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi

cargo fuzz build "${build[@]}" --sanitizer none

for target in "${targets[@]}"; do
    # New inputs go to a scratch folder; the committed seeds are only read.
    grown="$(mktemp -d)"
    trap 'rm -rf "$grown"' EXIT
    printf '\n==> fuzz %s for %s s\n' "$target" "$seconds"
    cargo fuzz run "${build[@]}" --sanitizer none "$target" "$grown" "fuzz/corpus/$target" -- \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1
    rm -rf "$grown"
done
printf '\n==> fuzz smoke: every target ran %s s without a crash\n' "$seconds"
