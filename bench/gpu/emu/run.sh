#!/usr/bin/env bash
# Runs the CUDA kernels on the CPU (cuda_shim.h) against plain loops: no GPU, no nvcc; g++ 12+.
# Covers conv.cu, elementwise.cu, embedding.cu, loss.cu and optim.cu (linear.cu uses warp
# shuffles, which the shim does not emulate; the GPU parity tests cover it).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
src="$here/../../../kernels/src/cuda"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
grep -v 'extern __shared__ float4 smem_f4\[\];' "$src/conv.cu" > "$work/conv_emu.cu"
for module in elementwise embedding loss optim; do
    sed 's/__shared__/static/g' "$src/$module.cu" > "$work/${module}_emu.cu"
done
g++ -std=c++20 -O2 -pthread -I"$here" -I"$work" "$here/ops_emu.cpp" -o "$work/ops_emu"
"$work/ops_emu"
g++ -std=c++20 -O2 -pthread -I"$here" -I"$work" "$here/conv_emu.cpp" -o "$work/conv_emu"
"$work/conv_emu"
