#!/usr/bin/env bash
# The GPU check of the CUDA backend, for a GPU machine with no Rust toolchain (see STACK.md).
#
# Before: on the build machine, `scripts/build-gpu-bundle.sh` (it documents the cargo commands)
# fills gpu-bundle/ with release binaries (gpu-bench, agent) and the test executables (parity,
# nvrtc_compile). Then, from the repository root on the GPU machine:
#     bash scripts/gpu-check.sh            # device tool: carry ["gpu-bundle"], timeout_s 540
# It runs, in order (each step bounded by `timeout`, about 6 minutes in all):
#   1. the device and driver; libnvrtc via `ldconfig -p`, else /usr/local/cuda/lib64;
#   2. the NVRTC compile test, the CUDA-vs-CPU parity tests and cnn's whole training step on
#      both backends (gpu_step), with REQUIRE_NVRTC=1 REQUIRE_CUDA=1;
#   3. the FLOP/byte floor of the default configuration;
#   4. the default configuration on MR, 1 warm-up + 3 timed epochs (device events and host clock);
#   5. the same model in PyTorch on the same GPU (bench/pytorch_textcnn.py --device cuda);
#   6. 1 trial alone against 4 trials sharing the GPU (epochs a second);
# and prints one results table. $OUT/ (or a temporary folder) gets six files: tests.log, floor.json,
# single.json, pytorch.log, shared.jsonl and results.md (the device tool returns at most 8).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-$(mktemp -d)}"
BUNDLE="${BUNDLE:-gpu-bundle}"
WARMUP="${WARMUP:-1}"
EPOCHS="${EPOCHS:-3}"
status=0
step() { echo; echo "==== $*"; }
fail() { echo "FAILED: $*"; status=1; }

step "device"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv | tee "$OUT/tests.log" \
    || fail "nvidia-smi"
gpu_name=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -n1)
cat "$BUNDLE/COMMIT" 2>/dev/null || fail "no $BUNDLE/: run scripts/build-gpu-bundle.sh first and carry it"
[ "$(cat "$BUNDLE/PROFILE" 2>/dev/null)" = release ] || echo "WARNING: not a release bundle: timings are meaningless"
if ldconfig -p | grep -q 'libnvrtc\.so'; then
    ldconfig -p | grep 'libnvrtc\.so'
elif ls /usr/local/cuda/lib64/libnvrtc.so.13* > /dev/null 2>&1; then
    echo "libnvrtc not in the linker cache: using /usr/local/cuda/lib64"
    export LD_LIBRARY_PATH="/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}"
else
    # PyTorch's wheels bring their own NVRTC under site-packages/nvidia/.
    nvrtc=$(python3 -c 'import site; print(" ".join(site.getsitepackages()))' 2>/dev/null \
        | xargs -r -n1 -I{} find {} -name 'libnvrtc.so.13*' 2>/dev/null | head -n1)
    if [ -n "$nvrtc" ]; then
        echo "using $nvrtc"
        export LD_LIBRARY_PATH="$(dirname "$nvrtc"):${LD_LIBRARY_PATH:-}"
    else
        fail "no libnvrtc.so.13 found"
    fi
fi

step "nvrtc compile test"
REQUIRE_NVRTC=1 timeout 120 "$BUNDLE/nvrtc_compile" --nocapture --test-threads=2 2>&1 \
    | tee -a "$OUT/tests.log" | tail -n 25
[ "${PIPESTATUS[0]}" -eq 0 ] || fail "nvrtc_compile"

step "parity tests (CUDA against CPU)"
REQUIRE_CUDA=1 RAYON_NUM_THREADS=8 timeout 240 "$BUNDLE/parity" --test-threads=4 2>&1 \
    | tee -a "$OUT/tests.log" | tail -n 40
[ "${PIPESTATUS[0]}" -eq 0 ] || fail "parity"
REQUIRE_CUDA=1 RAYON_NUM_THREADS=8 timeout 120 "$BUNDLE/gpu_step" --nocapture 2>&1 \
    | tee -a "$OUT/tests.log" | tail -n 10
[ "${PIPESTATUS[0]}" -eq 0 ] || fail "gpu_step (cnn training step, GPU against CPU)"

step "floor"
case "$gpu_name" in
    *H200*) tbps=4.8 ;;
    *H100*PCIe*) tbps=2.0 ;;
    *) tbps=3.35 ;;
esac
timeout 60 "$BUNDLE/gpu-bench" floor --tflops 67 --tbps "$tbps" | tee "$OUT/floor.json" || fail "floor"

step "default configuration, ours"
timeout 150 "$BUNDLE/gpu-bench" single --warmup "$WARMUP" --epochs "$EPOCHS" | tee "$OUT/single.json" \
    || fail "gpu-bench single"

step "default configuration, PyTorch"
if [ -f bench/pytorch_textcnn.py ]; then
    PYTHONUNBUFFERED=1 timeout 180 python3 bench/pytorch_textcnn.py --device cuda --json \
        --epochs $((WARMUP + EPOCHS)) 2>&1 | tee "$OUT/pytorch.log" | tail -n 20
    [ "${PIPESTATUS[0]}" -eq 0 ] || fail "pytorch"
else
    fail "bench/pytorch_textcnn.py is missing"
fi

step "trials sharing one GPU"
timeout 120 "$BUNDLE/gpu-bench" shared --slots 1 --warmup 0 --epochs 2 | tee "$OUT/shared.jsonl" \
    || fail "shared 1"
timeout 150 "$BUNDLE/gpu-bench" shared --slots 4 --warmup 0 --epochs 2 | tee -a "$OUT/shared.jsonl" \
    || fail "shared 4"

step "results"
python3 - "$OUT" "$gpu_name" <<'PY' | tee "$OUT/results.md"
import json, re, statistics, sys, datetime
out, gpu = sys.argv[1], sys.argv[2]
def load(name):
    try:
        lines = [l for l in open(f"{out}/{name}") if l.strip().startswith("{")]
        return json.loads(lines[-1]) if lines else None
    except OSError:
        return None
def torch_epochs():
    # Accepts JSON lines with "epoch_seconds" (and "dev_accuracy"), or "epoch N ... X s" text.
    secs, acc = [], []
    try:
        for line in open(f"{out}/pytorch.log"):
            line = line.strip()
            if line.startswith("{"):
                try:
                    d = json.loads(line)
                except ValueError:
                    continue
                if "epoch_seconds" in d:
                    secs.append(float(d["epoch_seconds"])); acc.append(d.get("dev_accuracy"))
            else:
                m = re.search(r"epoch\s+\d+.*?([0-9.]+)\s*s\b", line)
                if m:
                    secs.append(float(m.group(1)))
    except OSError:
        pass
    return secs, acc
single, floor = load("single.json"), load("floor.json")
def shared(slots):
    try:
        for line in open(f"{out}/shared.jsonl"):
            if line.strip().startswith("{"):
                d = json.loads(line)
                if d.get("slots") == slots:
                    return d
    except (OSError, ValueError):
        pass
    return None
s1, s4 = shared(1), shared(4)
tsecs, tacc = torch_epochs()
warm = int(single["warmup_epochs"]) if single else 1
ours = single["median_device_epoch_seconds"] if single else float("nan")
ours_wall = single["median_epoch_seconds"] if single else float("nan")
torch = statistics.median(tsecs[warm:]) if len(tsecs) > warm else float("nan")
fl = floor["floor"]["epoch_floor_seconds"] if floor else float("nan")
rows = [
    ("card", gpu),
    ("date (UTC)", datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M")),
    ("ours: median epoch, device events (s)", f"{ours:.4f}"),
    ("ours: median epoch, host clock (s)", f"{ours_wall:.4f}"),
    ("PyTorch: median epoch (s)", f"{torch:.4f}"),
    ("ours / PyTorch (goal <= 0.5)", f"{ours_wall / torch:.3f}" if torch == torch else "n/a"),
    ("floor: epoch at FP32 peak / bandwidth (s)", f"{fl:.4f}"),
    ("ours / floor", f"{ours / fl:.1f}x" if fl == fl else "n/a"),
    ("step FLOPs / bytes", f"{floor['floor']['step_flops']:.3e} / {floor['floor']['step_bytes']:.3e}" if floor else "n/a"),
    ("ours: dev accuracy by epoch", ", ".join(f"{a:.4f}" for a in single["trial"]["dev_accuracy"]) if single else "n/a"),
    ("PyTorch: dev accuracy by epoch", ", ".join(f"{a:.4f}" for a in tacc if a is not None) or "n/a"),
    ("1 trial alone: epochs/s", f"{s1['epochs_per_second']:.3f}" if s1 else "n/a"),
    ("4 trials sharing: epochs/s", f"{s4['epochs_per_second']:.3f}" if s4 else "n/a"),
    ("sharing speed-up (goal >= 3)", f"{s4['epochs_per_second'] / s1['epochs_per_second']:.2f}" if s1 and s4 else "n/a"),
]
print("| measure | value |")
print("|---|---|")
for k, v in rows:
    print(f"| {k} | {v} |")
PY
echo
[ "$status" -eq 0 ] && echo "gpu-check: all steps passed" || echo "gpu-check: some steps FAILED (see above)"
exit "$status"
