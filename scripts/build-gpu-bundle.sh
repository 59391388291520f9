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
# BUNDLE_PROFILE=dev builds unoptimized binaries instead (to check this script quickly; never
# time those).
# Binaries need only glibc 2.34+ on the GPU machine. Debug info is stripped to keep the bundle
# far under the 64 MiB a device call carries.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target/gpu-bundle}"
bundle="$PWD/gpu-bundle"

profile="${BUNDLE_PROFILE:-release}"
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
git status --porcelain | wc -l | awk '{print "uncommitted files: " $1}' >> "$bundle/COMMIT"
grep -qx '/gpu-bundle/' .git/info/exclude 2>/dev/null || echo '/gpu-bundle/' >> .git/info/exclude
du -sh "$bundle"
ls -l "$bundle"
