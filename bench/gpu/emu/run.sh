#!/usr/bin/env bash
# Runs every CUDA kernel module on the CPU (cuda_shim.h) against plain loops: no GPU, no nvcc;
# g++ 12+ (C++20 <barrier>). First the emulator's own warp shuffles against their definitions,
# then linear.cu (warp shuffles), elementwise.cu, embedding.cu, loss.cu, optim.cu and conv.cu.
# Exits non-zero on any mismatch, and when a kernel module has no check here.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
src="$here/../../../kernels/src/cuda"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
CXX="${CXX:-g++}"

# Every .cu module must be covered: a new one without a check fails here.
covered="conv elementwise embedding linear loss optim"
for cu in "$src"/*.cu; do
    module="$(basename "$cu" .cu)"
    case " $covered " in
        *" $module "*) ;;
        *) echo "emulator: $module.cu has no check in bench/gpu/emu (add one)"; exit 1 ;;
    esac
done

grep -v 'extern __shared__ float4 smem_f4\[\];' "$src/conv.cu" > "$work/conv_emu.cu"
for module in elementwise embedding linear loss optim; do
    sed 's/__shared__/static/g' "$src/$module.cu" > "$work/${module}_emu.cu"
done
status=0
for check in shuffle_emu linear_emu ops_emu conv_emu; do
    "$CXX" -std=c++20 -O2 -pthread -I"$here" -I"$work" "$here/$check.cpp" -o "$work/$check"
    "$work/$check" || { echo "emulator: $check FAILED"; status=1; }
done
[ "$status" -eq 0 ] && echo "emulator: every kernel module matches the plain loops"
exit "$status"
