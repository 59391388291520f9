#!/usr/bin/env bash
# The GPU check of the CUDA backend, for a GPU machine with no Rust toolchain (see STACK.md),
# bounded so that one device call (at most about 540 s) cannot be wasted.
#
# Before: on the build machine, `scripts/build-gpu-bundle.sh` fills gpu-bundle/ with the release
# gpu-bench and the test executables (parity, nvrtc_compile, gpu_step) plus MANIFEST. Then, from
# the repository root on the GPU machine:
#     bash scripts/gpu-check.sh             # device tool: carry ["gpu-bundle"], timeout_s 540
#     bash scripts/gpu-check.sh --dry-run   # here, without a GPU: every step that needs none
#     bash scripts/gpu-check.sh --budget    # prints the steps' time limits and their sum
#
# Every step runs under its own `timeout`; the limits (plus the kill grace) add up to at most
# BUDGET_S = 420 s, which the script checks before it starts. After every step its row goes to
# $OUT/gpu-check.md and its output to $OUT/gpu-check.log, so a hang loses only that step. The
# gpu-bench JSON lines go to $OUT/gpu-check.jsonl, PyTorch's to $OUT/pytorch.log. The steps:
#   versions    driver (nvidia-smi and cuDriverGetVersion), NVRTC, glibc, Python and numpy;
#   bundle      bundle contents, commit, profile, size, the binaries' GLIBC_ requirement;
#   lists       every binary starts; each test binary's `--list` count is > 0 and equals
#               MANIFEST's (a build without `cuda` lists 0 parity tests: an error);
#   python      the imports of bench/pytorch_textcnn.py (numpy required; torch required on a
#               GPU run, reported as missing in a dry run) and data/mr;
#   floor       the FLOP/byte floor (no GPU);
#   nvrtc       the NVRTC compile test (cubin sm_80/sm_90 and PTX), REQUIRE_NVRTC=1 (no GPU
#               needed: it runs in a dry run too, with libnvrtc);
#   parity      CUDA against CPU, REQUIRE_CUDA=1;  gpu_step: cnn's whole step on both;
#   epoch_check one MR epoch on the GPU and the CPU from one seed (train loss, dev accuracy
#               within 1e-3); in a dry run: it starts and says what is missing;
#   kernels     per-operation device time over 20 steps, launches and copies a step (same);
#   single      the default configuration, 1 warm-up + 3 timed epochs with the step as a CUDA
#               graph (from epoch 2), then the same uncaptured (TUNEFLEET_CUDA_GRAPH=0's path);
#   pytorch     the same model in PyTorch on the same GPU, 1 + 3 epochs;
#   shared1/4   1 trial alone, then 4 trials sharing the GPU;
#   results     one table from the JSON lines.
# Exit status: 0 when every step that ran passed, 1 otherwise, 2 for a bad call or budget.
set -uo pipefail
cd "$(dirname "$0")/.."

BUDGET_S=420
KILL_GRACE_S=2
# name  timeout_s  where (any: also in a dry run; gpu: only with a GPU; both: in a dry run it
# runs in its no-GPU form)
STEPS=(
    "versions 8 any"
    "bundle 8 any"
    "lists 12 any"
    "python 12 any"
    "floor 10 any"
    "nvrtc 30 any"
    "parity 65 gpu"
    "gpu_step 20 gpu"
    "epoch_check 50 both"
    "kernels 15 both"
    "single 44 gpu"
    "pytorch 50 gpu"
    "shared1 20 gpu"
    "shared4 28 gpu"
    "results 5 any"
)

# The NVRTC search before the first step is bounded too (FIND_NVRTC_S + its grace).
FIND_NVRTC_S=10

budget_total() {
    local total=$((FIND_NVRTC_S + 1)) entry name limit where
    for entry in "${STEPS[@]}"; do
        read -r name limit where <<< "$entry"
        total=$((total + limit + KILL_GRACE_S))
    done
    echo "$total"
}

DRY_RUN=0
case "${1:-}" in
    "") ;;
    --dry-run) DRY_RUN=1 ;;
    --budget)
        for entry in "${STEPS[@]}"; do echo "$entry"; done
        echo "total $(budget_total) s (limits + ${KILL_GRACE_S} s kill grace each + ${FIND_NVRTC_S} + 1 s NVRTC search), budget ${BUDGET_S} s"
        [ "$(budget_total)" -le "$BUDGET_S" ]
        exit $?
        ;;
    *) echo "usage: $0 [--dry-run | --budget]" >&2; exit 2 ;;
esac
total=$(budget_total)
if [ "$total" -gt "$BUDGET_S" ]; then
    echo "gpu-check: the steps' limits add up to ${total} s, over the ${BUDGET_S} s budget" >&2
    exit 2
fi

export DRY_RUN
export OUT="${OUT:-$(mktemp -d)}"
mkdir -p "$OUT"
export BUNDLE="${BUNDLE:-gpu-bundle}"
export PYTHON="${PYTHON:-python3}"
export LOG="$OUT/gpu-check.log" TABLE="$OUT/gpu-check.md" JSONL="$OUT/gpu-check.jsonl"
export RUST_BACKTRACE=0
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
: > "$LOG"
: > "$JSONL"
mode=$([ "$DRY_RUN" = 1 ] && echo "dry run (no GPU)" || echo "GPU run")
{
    echo "# gpu-check, $mode, $(date -u '+%Y-%m-%d %H:%M UTC'), budget ${total}/${BUDGET_S} s"
    echo
    echo "| step | result | seconds | limit |"
    echo "|---|---|---|---|"
} > "$TABLE"

# libnvrtc: the linker cache, else /usr/local/cuda/lib64, else a wheel under site-packages
# (PyTorch's). Bounded: it runs before the first step.
find_nvrtc() {
    if ldconfig -p 2> /dev/null | grep -q 'libnvrtc\.so\.13'; then return 0; fi
    if ls /usr/local/cuda/lib64/libnvrtc.so.13* > /dev/null 2>&1; then
        echo /usr/local/cuda/lib64
        return 0
    fi
    local lib
    lib=$("$PYTHON" -c 'import site; print("\n".join(site.getsitepackages()))' 2> /dev/null \
        | while read -r dir; do find "$dir" -name 'libnvrtc.so.13*' 2> /dev/null; done | head -n 1)
    [ -n "$lib" ] && dirname "$lib"
    return 0
}
export -f find_nvrtc
nvrtc_dir=$(timeout -k 1 "$FIND_NVRTC_S" bash -c find_nvrtc)
[ -n "$nvrtc_dir" ] && export LD_LIBRARY_PATH="$nvrtc_dir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

json_field() { # file field: the field of the last JSON line of the file
    "$PYTHON" -c 'import json,sys; l=[x for x in open(sys.argv[1]) if x.startswith("{")]; print(json.loads(l[-1]).get(sys.argv[2], "")) if l else None' "$1" "$2" 2> /dev/null
}
export -f json_field

step_versions() {
    echo "nvidia-smi: $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 | head -n 2)"
    "$BUNDLE/gpu-bench" versions | tee -a "$JSONL"
    echo "libnvrtc folder: ${LD_LIBRARY_PATH:-(linker cache)}"
    echo "glibc: $(getconf GNU_LIBC_VERSION 2>&1)"
    echo "python: $("$PYTHON" --version 2>&1) ($PYTHON)"
    echo "numpy: $("$PYTHON" -c 'import numpy; print(numpy.__version__)' 2>&1 | tail -n 1)"
    if [ "$DRY_RUN" = 0 ]; then
        nvidia-smi --query-gpu=name --format=csv,noheader > /dev/null || { echo "nvidia-smi failed"; return 1; }
    fi
}

step_bundle() {
    [ -d "$BUNDLE" ] || { echo "no $BUNDLE/: run scripts/build-gpu-bundle.sh and carry it"; return 1; }
    local missing=0 exe
    for exe in gpu-bench parity nvrtc_compile gpu_step; do
        [ -x "$BUNDLE/$exe" ] || { echo "missing $BUNDLE/$exe"; missing=1; }
    done
    [ -f "$BUNDLE/MANIFEST" ] || { echo "missing $BUNDLE/MANIFEST"; missing=1; }
    cat "$BUNDLE/COMMIT" "$BUNDLE/MANIFEST" 2> /dev/null
    echo "profile: $(cat "$BUNDLE/PROFILE" 2> /dev/null)"
    [ "$DRY_RUN" = 1 ] || [ "$(cat "$BUNDLE/PROFILE" 2> /dev/null)" = release ] \
        || echo "WARNING: not a release bundle: timings are meaningless"
    du -sh "$BUNDLE"
    local bytes
    bytes=$(du -sb "$BUNDLE" | cut -f1)
    [ "$bytes" -lt $((64 * 1024 * 1024)) ] || { echo "bundle is $bytes bytes, over 64 MiB"; missing=1; }
    if command -v objdump > /dev/null; then
        local need
        need=$(for exe in "$BUNDLE"/*; do objdump -T "$exe" 2> /dev/null; done \
            | grep -o 'GLIBC_[0-9.]*' | sort -uV | tail -n 1)
        echo "binaries need at most $need (this machine: $(getconf GNU_LIBC_VERSION))"
        [ "$(printf '%s\nGLIBC_2.34\n' "$need" | sort -V | tail -n 1)" = GLIBC_2.34 ] \
            || { echo "binaries need $need, newer than GLIBC_2.34"; missing=1; }
    else
        echo "no objdump here; the build recorded: $(grep glibc "$BUNDLE/MANIFEST" 2> /dev/null)"
    fi
    return "$missing"
}

step_lists() {
    local bad=0 exe listed expected
    "$BUNDLE/gpu-bench" --help > /dev/null || { echo "gpu-bench does not start"; bad=1; }
    if ! "$BUNDLE/gpu-bench" versions | grep -q '"cuda_feature":true'; then
        echo "gpu-bench was built without --features cuda"
        bad=1
    fi
    for exe in parity nvrtc_compile gpu_step; do
        listed=$("$BUNDLE/$exe" --list 2> /dev/null | grep -c ': test$')
        expected=$(awk -v e="$exe" '$1 == "tests" && $2 == e {print $3}' "$BUNDLE/MANIFEST" 2> /dev/null)
        echo "$exe: $listed tests listed (MANIFEST: ${expected:-none})"
        if [ "$listed" -eq 0 ]; then
            echo "ERROR: $exe lists no test (built without --features cuda?)"
            bad=1
        elif [ -n "$expected" ] && [ "$listed" != "$expected" ]; then
            echo "ERROR: $exe lists $listed tests, MANIFEST says $expected"
            bad=1
        fi
    done
    return "$bad"
}

step_python() {
    local script=bench/pytorch_textcnn.py
    [ -f "$script" ] || { echo "missing $script"; return 1; }
    [ -d data/mr ] || { echo "missing data/mr (PyTorch reads it)"; return 1; }
    # Each top-level import of the script, tried alone: numpy is required, torch only on a GPU.
    "$PYTHON" - "$script" "$DRY_RUN" << 'PY'
import ast, importlib, sys
script, dry = sys.argv[1], sys.argv[2] == "1"
modules = []
for node in ast.parse(open(script).read()).body:
    if isinstance(node, ast.Import):
        modules += [a.name for a in node.names]
    elif isinstance(node, ast.ImportFrom) and node.module:
        modules.append(node.module)
failed = False
for name in modules:
    try:
        mod = importlib.import_module(name)
        print(f"import {name}: ok {getattr(mod, '__version__', '')}".rstrip())
    except Exception as err:  # noqa: BLE001 (report any import failure)
        top = name.split(".")[0]
        if dry and top == "torch":
            print(f"import {name}: MISSING here ({type(err).__name__}), needed on the GPU machine")
        else:
            print(f"import {name}: FAILED ({type(err).__name__}: {err})")
            failed = True
sys.exit(1 if failed else 0)
PY
}

step_floor() {
    local gpu tbps=3.35
    gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader 2> /dev/null | head -n 1)
    case "$gpu" in
        *H200*) tbps=4.8 ;;
        *H100*PCIe*) tbps=2.0 ;;
    esac
    "$BUNDLE/gpu-bench" floor --tflops 67 --tbps "$tbps" | tee -a "$JSONL"
}

step_nvrtc() { REQUIRE_NVRTC=1 "$BUNDLE/nvrtc_compile" --test-threads=4; }
step_parity() { REQUIRE_CUDA=1 RAYON_NUM_THREADS=8 "$BUNDLE/parity" --test-threads=4; }
step_gpu_step() { REQUIRE_CUDA=1 RAYON_NUM_THREADS=8 "$BUNDLE/gpu_step" --nocapture; }

# In a dry run these must start and fail, saying what is missing.
expect_no_gpu() {
    local out rc
    out=$("$@" 2>&1)
    rc=$?
    echo "$out" | head -n 3
    if [ "$rc" -ne 0 ] && echo "$out" | grep -q 'no usable GPU'; then
        echo "(dry run: it started and said what is missing, exit $rc)"
        return 0
    fi
    echo "ERROR: expected a non-zero exit naming what is missing, got exit $rc"
    return 1
}
export -f expect_no_gpu

step_epoch_check() {
    if [ "$DRY_RUN" = 1 ]; then
        expect_no_gpu "$BUNDLE/gpu-bench" epoch-check
        return
    fi
    "$BUNDLE/gpu-bench" epoch-check --gpu 0 --seed 1 --tolerance 1e-3 | tee -a "$JSONL"
}

step_kernels() {
    if [ "$DRY_RUN" = 1 ]; then
        expect_no_gpu "$BUNDLE/gpu-bench" kernels
        return
    fi
    "$BUNDLE/gpu-bench" kernels --gpu 0 --warmup 3 --steps 20 | tee -a "$JSONL"
}

step_single() { "$BUNDLE/gpu-bench" single --gpu 0 --warmup 1 --epochs 3 | tee -a "$JSONL"; }
step_pytorch() {
    PYTHONUNBUFFERED=1 "$PYTHON" bench/pytorch_textcnn.py --device cuda --json --epochs 4 \
        | tee "$OUT/pytorch.log"
}
step_shared1() { "$BUNDLE/gpu-bench" shared --gpu 0 --slots 1 --warmup 0 --epochs 2 | tee -a "$JSONL"; }
step_shared4() { "$BUNDLE/gpu-bench" shared --gpu 0 --slots 4 --warmup 0 --epochs 2 | tee -a "$JSONL"; }

step_results() {
    {
    "$PYTHON" - "$JSONL" "$OUT/pytorch.log" << 'PY'
import json, statistics, sys
records = {}
for line in open(sys.argv[1]):
    if line.startswith("{"):
        d = json.loads(line)
        key = d.get("mode") + (str(d["slots"]) if d.get("mode") == "shared" else "")
        records[key] = d
torch_secs, torch_acc = [], []
try:
    for line in open(sys.argv[2]):
        if line.startswith("{"):
            d = json.loads(line)
            if "epoch_seconds" in d:
                torch_secs.append(float(d["epoch_seconds"])); torch_acc.append(d.get("dev_accuracy"))
except (OSError, ValueError):
    pass
g = records.get
def f(v, fmt="{:.4f}"):
    return fmt.format(v) if isinstance(v, (int, float)) else "n/a"
single, floor, ec, kern, s1, s4 = g("single"), g("floor"), g("epoch-check"), g("kernels"), g("shared1"), g("shared4")
ours = single["median_device_epoch_seconds"] if single else None
ours_wall = single["median_epoch_seconds"] if single else None
torch = statistics.median(torch_secs[1:]) if len(torch_secs) > 1 else None
fl = floor["floor"]["epoch_floor_seconds"] if floor else None
rows = [
    ("card", single["device"] if single else (ec or {}).get("device", "n/a")),
    ("epoch check: train loss and dev accuracy differences (each <= 1e-3)",
     f"{ec['train_loss_diff']:.2e}, {ec['dev_accuracy_diff']:.2e}, pass {ec['pass']}" if ec else "n/a"),
    ("launches / copies a step", f"{kern['launches_per_step']:.1f} / {kern['copies_per_step']:.1f}" if kern else "n/a"),
    ("step time, device events (ms)", f(kern["step_seconds"] * 1e3, "{:.3f}") if kern else "n/a"),
    ("ours: median epoch, device events (s)", f(ours)),
    ("ours: median epoch, host clock (s)", f(ours_wall)),
    ("ours uncaptured (no CUDA graph): median epoch, device events / host clock (s)",
     f"{f(single.get('uncaptured_median_device_epoch_seconds'))} / {f(single.get('uncaptured_median_epoch_seconds'))}" if single else "n/a"),
    ("graph launches; graph and uncaptured results agree",
     f"{single.get('graph_launches')}; {single.get('graph_and_uncaptured_agree')}" if single else "n/a"),
    ("PyTorch: median epoch (s)", f(torch)),
    ("ours / PyTorch (goal <= 0.25)", f(ours_wall / torch, "{:.3f}") if ours_wall and torch else "n/a"),
    ("floor: epoch at FP32 peak / bandwidth (s)", f(fl)),
    ("ours / floor", f"{ours / fl:.1f}x" if ours and fl else "n/a"),
    ("4 sharing / 1 alone, epochs/s (goal >= 3)",
     f"{s4['epochs_per_second'] / s1['epochs_per_second']:.2f}" if s1 and s4 else "n/a"),
]
print("| measure | value |")
print("|---|---|")
for k, v in rows:
    print(f"| {k} | {v} |")
if kern:
    print("\n| operation | calls | ms total over the profiled steps |")
    print("|---|---|---|")
    for op, t in sorted(kern["profiled_ops"].items(), key=lambda kv: -kv[1]["seconds"]):
        print(f"| {op} | {t['calls']} | {t['seconds'] * 1e3:.3f} |")
PY
    } | tee -a "$TABLE"
}

export -f step_versions step_bundle step_lists step_python step_floor step_nvrtc step_parity \
    step_gpu_step step_epoch_check step_kernels step_single step_pytorch step_shared1 \
    step_shared4 step_results

status=0
skipped=()
for entry in "${STEPS[@]}"; do
    read -r name limit where <<< "$entry"
    if [ "$DRY_RUN" = 1 ] && [ "$where" = gpu ]; then
        skipped+=("$name")
        echo "| $name | skipped (needs a GPU) | - | $limit |" >> "$TABLE"
        continue
    fi
    printf '\n==== %s (limit %s s)\n' "$name" "$limit" | tee -a "$LOG"
    started=$SECONDS
    timeout -k "$KILL_GRACE_S" "$limit" bash -c "step_$name" > "$work/$name.out" 2>&1
    rc=$?
    took=$((SECONDS - started))
    cat "$work/$name.out" >> "$LOG"
    tail -n 15 "$work/$name.out"
    case "$rc" in
        0) result=ok ;;
        124 | 137) result="TIMED OUT"; status=1 ;;
        *) result="FAILED (exit $rc)"; status=1 ;;
    esac
    echo "$name: $result in ${took} s"
    echo "| $name | $result | $took | $limit |" >> "$TABLE"
done

echo
[ "${#skipped[@]}" -gt 0 ] && echo "skipped in the dry run (need a GPU): ${skipped[*]}" | tee -a "$TABLE"
echo
cat "$TABLE"
[ "$status" -eq 0 ] && echo "gpu-check ($mode): every step that ran passed" \
    || echo "gpu-check ($mode): some steps FAILED (see above and $LOG)"
exit "$status"
