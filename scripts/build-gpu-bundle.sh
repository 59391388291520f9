#!/usr/bin/env bash
# Builds, on a machine with the Rust toolchain, everything scripts/gpu-check.sh runs on a GPU
# machine that has none, into gpu-bundle/ (ignored by git through .git/info/exclude, carried
# to the device machine with `carry: ["gpu-bundle"]`).
#
# The commands (release, CUDA feature; cudarc loads libcuda/libnvrtc at run time, so no CUDA
# toolkit is needed here):
#   cargo build --release --features cuda -p gpu-bench
#   cargo test  --release --features cuda -p kernels -p cnn --no-run   (test executables parity,
#                                            nvrtc_compile and cnn's gpu_step)
# BUNDLE_STUDY=1 also adds the CUDA builds of coordinator, agent and tunectl for
# scripts/gpu-study.sh:
#   cargo build --release --features cuda -p agent && cargo build --release -p coordinator -p tunectl
# BUNDLE_PROFILE=dev builds unoptimized binaries instead, in the ordinary target/ (CI: it
# reuses what the earlier `--features cuda` steps built, for `gpu-check.sh --dry-run`; never time
# those). The release build goes to target/gpu-bundle/ unless CARGO_TARGET_DIR says otherwise.
# The bundle gets MANIFEST: each test executable's test count (gpu-check.sh compares `--list`
# with it) and the newest GLIBC_ symbol version the binaries need. The script fails when that is
# newer than GLIBC_2.34 (the GPU machines' floor) or the bundle is not under 64 MiB (what a
# device call carries). Debug info is stripped.
set -euo pipefail
cd "$(dirname "$0")/.."
bundle="${BUNDLE:-$PWD/gpu-bundle}"

profile="${BUNDLE_PROFILE:-release}"
if [ "$profile" = release ]; then
    export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target/gpu-bundle}"
else
    export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
fi
case "$profile" in
    release) profile_dir=release ;;
    dev) profile_dir=debug ;;
    *) echo "BUNDLE_PROFILE must be release or dev" >&2; exit 2 ;;
esac
mkdir -p "$CARGO_TARGET_DIR"
cargo build --profile "$profile" --features cuda -p gpu-bench
cargo test --profile "$profile" --features cuda -p kernels -p cnn --no-run \
    --message-format=json-render-diagnostics > "$CARGO_TARGET_DIR/test-executables.json"

rm -rf "$bundle"
mkdir -p "$bundle"
cp "$CARGO_TARGET_DIR/$profile_dir/gpu-bench" "$bundle/"
if [ "${BUNDLE_STUDY:-0}" = 1 ]; then
    cargo build --profile "$profile" --features cuda -p agent
    cargo build --profile "$profile" -p coordinator -p tunectl
    for bin in coordinator agent tunectl; do
        cp "$CARGO_TARGET_DIR/$profile_dir/$bin" "$bundle/"
    done
fi
echo "$profile" > "$bundle/PROFILE"
python3 - "$CARGO_TARGET_DIR/test-executables.json" "$bundle" <<'PY'
import json, shutil, sys
wanted = {"parity", "nvrtc_compile", "gpu_step"}
found = set()
for line in open(sys.argv[1]):
    try:
        msg = json.loads(line)
    except ValueError:
        continue
    target = msg.get("target", {})
    if msg.get("reason") == "compiler-artifact" and msg.get("executable") and target.get("name") in wanted:
        shutil.copy(msg["executable"], f"{sys.argv[2]}/{target['name']}")
        found.add(target["name"])
missing = wanted - found
if missing:
    sys.exit(f"test executables not built: {sorted(missing)}")
PY
for exe in "$bundle"/*; do
    strip --strip-debug "$exe" 2>/dev/null || true
done
git rev-parse HEAD > "$bundle/COMMIT" 2>/dev/null || echo unknown > "$bundle/COMMIT"
{ git status --porcelain 2>/dev/null || true; } | wc -l | awk '{print "uncommitted files: " $1}' >> "$bundle/COMMIT"
# Keep gpu-bundle/ out of git: a plain checkout through .git/info/exclude; in a worktree (where
# .git is a file) use BUNDLE=target/... (ignored) or mind `git status`.
# A clone may lack .git/info (CI copies trees without it); the exclude is a convenience, so a
# failure to write it is reported, never fatal.
if [ -d .git ] && [ "$bundle" = "$PWD/gpu-bundle" ]; then
    if ! grep -qx '/gpu-bundle/' .git/info/exclude 2>/dev/null; then
        { mkdir -p .git/info && echo '/gpu-bundle/' >> .git/info/exclude; } 2>/dev/null \
            || echo "note: could not add /gpu-bundle/ to .git/info/exclude; keep it out of commits" >&2
    fi
fi

status=0
: > "$bundle/MANIFEST"
for exe in parity nvrtc_compile gpu_step; do
    count=$("$bundle/$exe" --list 2>/dev/null | grep -c ': test$' || true)
    echo "tests $exe $count" >> "$bundle/MANIFEST"
    if [ "$count" -eq 0 ]; then
        echo "ERROR: $exe lists no test (was it built with --features cuda?)" >&2
        status=1
    fi
done
glibc=$(for exe in gpu-bench parity nvrtc_compile gpu_step; do objdump -T "$bundle/$exe"; done \
    | grep -o 'GLIBC_[0-9.]*' | sort -uV | tail -n 1)
echo "glibc $glibc" >> "$bundle/MANIFEST"
echo "binaries need at most $glibc (the GPU machines have 2.34 or newer)"
if [ "$(printf '%s\nGLIBC_2.34\n' "$glibc" | sort -V | tail -n 1)" != GLIBC_2.34 ]; then
    echo "ERROR: the binaries need $glibc, newer than GLIBC_2.34" >&2
    status=1
fi
bytes=$(du -sb "$bundle" | cut -f1)
echo "bundle: $bytes bytes (limit $((64 * 1024 * 1024)))"
if [ "$bytes" -ge $((64 * 1024 * 1024)) ]; then
    echo "ERROR: the bundle is not under 64 MiB" >&2
    status=1
fi
cat "$bundle/MANIFEST"
ls -l "$bundle"
exit "$status"
