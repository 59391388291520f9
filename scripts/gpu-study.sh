#!/usr/bin/env bash
# The GPU part of the study (issue 6), bounded in time, for a GPU machine with no Rust toolchain.
#
# Before, on the build machine: `BUNDLE_STUDY=1 scripts/build-gpu-bundle.sh` adds the CUDA builds
# of coordinator, agent and tunectl to gpu-bundle/. Then, from the repository root on the GPU
# machine:
#     bash scripts/gpu-study.sh             # device tool: carry ["gpu-bundle"], timeout_s 600
# It starts a coordinator and one agent on GPU 0 with SLOTS trials sharing the GPU, runs
# `tunectl study` (BO on SCENARIO, BUDGET trials), and after MINUTES (or when the study ends)
# writes the report of whatever was stored with `tunectl report`, so a study cut short by the
# device's time limit still leaves its tables. Everything lands in $OUT/study-gpu.tar.gz (the
# report, study-data.json and the logs), plus $OUT/study-gpu.md (the report's Markdown).
#
# Settings (environment): SCENARIO (basic), STRATEGIES (bo), BUDGET (240), SLOTS (4),
# MINUTES (8), INSTANCE (p5.48xlarge: H100s at a GPU's share of the instance's price, the
# nearest catalogued price for an H100 or H200), DEVICE ("--gpu 0"; "--cpu" with
# BUNDLE=target/release checks the script on a machine without a GPU).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-$(mktemp -d)}"
BUNDLE="${BUNDLE:-gpu-bundle}"
SCENARIO="${SCENARIO:-basic}"
STRATEGIES="${STRATEGIES:-bo}"
BUDGET="${BUDGET:-240}"
SLOTS="${SLOTS:-4}"
MINUTES="${MINUTES:-8}"
INSTANCE="${INSTANCE:-p5.48xlarge}"
DEVICE="${DEVICE:---gpu 0}"
STUDY="study-gpu-$SCENARIO"
work="$(mktemp -d)"

for bin in coordinator agent tunectl; do
    [ -x "$BUNDLE/$bin" ] || { echo "no $BUNDLE/$bin: run BUNDLE_STUDY=1 scripts/build-gpu-bundle.sh first"; exit 2; }
done
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>&1 | tee "$work/device.csv"
if ! ldconfig -p | grep -q 'libnvrtc\.so' && ls /usr/local/cuda/lib64/libnvrtc.so.13* > /dev/null 2>&1; then
    export LD_LIBRARY_PATH="/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}"
fi

"$BUNDLE/coordinator" --data-dir "$work/data" --listen-addr 127.0.0.1:50551 \
    --metrics-listen-addr 127.0.0.1:0 > "$work/coordinator.out" 2> "$work/coordinator.log" &
coordinator=$!
sleep 2
"$BUNDLE/agent" $DEVICE --slots "$SLOTS" --coordinator http://127.0.0.1:50551 \
    --instance-type "$INSTANCE" --metrics-listen-addr 127.0.0.1:0 > "$work/agent.out" 2> "$work/agent.log" &
agent=$!
export TUNEFLEET_COORDINATOR=http://127.0.0.1:50551

timeout -s INT "$((MINUTES * 60))" "$BUNDLE/tunectl" study --scenario "$SCENARIO" --strategies "$STRATEGIES" \
    --budget "$BUDGET" --repeats 1 --parallel "$SLOTS" --name "$STUDY" 2> "$work/study.log"
echo "tunectl study exited with $? (124: cut short after $MINUTES minutes; its experiments were stopped)"
tail -n 3 "$work/study.log"

"$BUNDLE/tunectl" report "$STUDY" --out "$work/report" | tail -n 20
cp "$work/report/report.md" "$OUT/study-gpu.md" 2> /dev/null || echo "no report written"
kill -TERM "$agent" 2> /dev/null; sleep 5; kill -TERM "$coordinator" 2> /dev/null; sleep 2
tar czf "$OUT/study-gpu.tar.gz" -C "$work" report device.csv study.log agent.log coordinator.log 2> /dev/null
ls -l "$OUT"
