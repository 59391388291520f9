// A tiny CPU stand-in for the CUDA C the kernels use, to run them without a GPU: one std::thread
// per CUDA thread, blocks one after another, __syncthreads as a std::barrier. Shared memory is a
// static (one block runs at a time; run.sh turns `__shared__` into `static`). Warp shuffles run
// the 32 lanes of a warp in lock-step at each shuffle: every lane publishes its value, waits on
// the warp's barrier, reads its source lane, and waits again before the slots are reused. Only
// full-warp masks are emulated (a partial mask aborts), and a lane that returns from the kernel
// leaves its warp's barrier. One-dimensional blocks and grids only.
// Build with -std=c++20 -pthread.
#pragma once
#include <algorithm>
#include <atomic>
#include <barrier>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <thread>
#include <type_traits>
#include <vector>

struct dim3 { unsigned int x = 1, y = 1, z = 1; };
struct float4 { float x, y, z, w; };
inline thread_local dim3 threadIdx, blockIdx;
inline dim3 blockDim, gridDim;
inline std::barrier<>* block_barrier = nullptr;

#define __global__
#define __device__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __restrict__
inline void __syncthreads() { block_barrier->arrive_and_wait(); }
inline float __int_as_float(unsigned int bits) { float f; std::memcpy(&f, &bits, 4); return f; }
inline float atomicAdd(float* address, float value) {
    return std::atomic_ref<float>(*address).fetch_add(value);
}

alignas(16) inline float4 smem_f4[48 * 1024 / 16];

// One warp of the running block: its lanes' published values and the barrier they meet at.
struct Warp {
    explicit Warp(unsigned int lanes) : lanes(lanes), barrier(lanes) {}
    unsigned int lanes;
    std::barrier<> barrier;
    std::uint64_t slot[32] = {};
    std::atomic<std::uint32_t> exited{0};  // lanes that returned from the kernel
};
inline thread_local Warp* this_warp = nullptr;

// Each lane of the warp passes `value` and gets the value of lane `source(lane)`, or its own
// when the source is out of range (as CUDA's shuffles do).
template <typename T, typename Source>
T warp_exchange(unsigned int mask, T value, Source source) {
    static_assert(std::is_trivially_copyable_v<T> && sizeof(T) <= 8, "shuffle of a scalar");
    Warp& warp = *this_warp;
    const unsigned int lane = threadIdx.x & 31u;
    const unsigned int full = warp.lanes == 32 ? 0xffffffffu : (1u << warp.lanes) - 1u;
    if ((mask & full) != full || (mask & warp.exited.load()) != 0) {
        std::fprintf(stderr, "emulator: shuffle mask %#x in a %u-lane warp whose lanes %#x exited\n",
                     mask, warp.lanes, warp.exited.load());
        std::abort();
    }
    std::uint64_t bits = 0;
    std::memcpy(&bits, &value, sizeof(T));
    warp.slot[lane] = bits;
    warp.barrier.arrive_and_wait();
    const int from = source(static_cast<int>(lane));
    T out = value;
    if (from >= 0 && from < static_cast<int>(warp.lanes)) std::memcpy(&out, &warp.slot[from], sizeof(T));
    warp.barrier.arrive_and_wait();
    return out;
}

template <typename T>
T __shfl_sync(unsigned int mask, T var, int src_lane, int width = 32) {
    return warp_exchange(mask, var, [=](int lane) { return lane / width * width + src_lane % width; });
}
template <typename T>
T __shfl_down_sync(unsigned int mask, T var, unsigned int delta, int width = 32) {
    return warp_exchange(mask, var, [=](int lane) {
        const int src = lane + static_cast<int>(delta);
        return src < lane / width * width + width ? src : lane;
    });
}
template <typename T>
T __shfl_up_sync(unsigned int mask, T var, unsigned int delta, int width = 32) {
    return warp_exchange(mask, var, [=](int lane) {
        const int src = lane - static_cast<int>(delta);
        return src >= lane / width * width ? src : lane;
    });
}
template <typename T>
T __shfl_xor_sync(unsigned int mask, T var, int lane_mask, int width = 32) {
    return warp_exchange(mask, var, [=](int lane) {
        const int src = lane ^ lane_mask;
        return src < lane / width * width + width ? src : lane;
    });
}
inline void __syncwarp(unsigned int mask = 0xffffffffu) { warp_exchange(mask, 0, [](int lane) { return lane; }); }

// Runs kernel(args...) over grid x block threads.
template <typename Kernel>
void launch(unsigned int grid, unsigned int block, Kernel kernel) {
    gridDim = {grid, 1, 1};
    blockDim = {block, 1, 1};
    for (unsigned int b = 0; b < grid; ++b) {
        std::barrier<> barrier(block);
        block_barrier = &barrier;
        std::vector<std::unique_ptr<Warp>> warps;
        for (unsigned int first = 0; first < block; first += 32)
            warps.push_back(std::make_unique<Warp>(std::min(32u, block - first)));
        std::vector<std::thread> threads;
        for (unsigned int t = 0; t < block; ++t) {
            Warp* warp = warps[t / 32].get();
            threads.emplace_back([=] {
                blockIdx = {b, 1, 1};
                threadIdx = {t, 1, 1};
                this_warp = warp;
                kernel();
                warp->exited.fetch_or(1u << (t % 32));
                warp->barrier.arrive_and_drop();
            });
        }
        for (auto& th : threads) th.join();
    }
}
