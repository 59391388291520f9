// A tiny CPU stand-in for the CUDA C the kernels use, to run them without a GPU: one std::thread
// per CUDA thread, blocks one after another, __syncthreads as a std::barrier. Shared memory is a
// static (one block runs at a time; run.sh turns `__shared__` into `static`). No warp shuffles.
// Build with -std=c++20 -pthread.
#pragma once
#include <algorithm>
#include <atomic>
#include <barrier>
#include <cmath>
#include <cstddef>
#include <cstring>
#include <functional>
#include <thread>
#include <vector>

struct dim3 { unsigned int x = 1, y = 1, z = 1; };
struct float4 { float x, y, z, w; };
inline thread_local dim3 threadIdx, blockIdx;
inline dim3 blockDim, gridDim;
inline std::barrier<>* block_barrier = nullptr;

#define __global__
#define __device__
#define __forceinline__ inline
#define __launch_bounds__(n)
#define __restrict__
inline void __syncthreads() { block_barrier->arrive_and_wait(); }
inline float __int_as_float(unsigned int bits) { float f; std::memcpy(&f, &bits, 4); return f; }
inline float atomicAdd(float* address, float value) {
    return std::atomic_ref<float>(*address).fetch_add(value);
}

alignas(16) inline float4 smem_f4[48 * 1024 / 16];

// Runs kernel(args...) over grid x block threads.
template <typename Kernel>
void launch(unsigned int grid, unsigned int block, Kernel kernel) {
    gridDim = {grid, 1, 1};
    blockDim = {block, 1, 1};
    for (unsigned int b = 0; b < grid; ++b) {
        std::barrier<> barrier(block);
        block_barrier = &barrier;
        std::vector<std::thread> threads;
        for (unsigned int t = 0; t < block; ++t) {
            threads.emplace_back([=] {
                blockIdx = {b, 1, 1};
                threadIdx = {t, 1, 1};
                kernel();
            });
        }
        for (auto& th : threads) th.join();
    }
}
