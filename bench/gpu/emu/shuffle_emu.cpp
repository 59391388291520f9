// Checks the emulator's own warp shuffles against their CUDA definitions, so that a kernel
// check passing through them means something: down, up, xor and indexed shuffles over full
// 32-lane warps, narrower widths, and a block whose last warp is partial.
#include "cuda_shim.h"
#include <cstdio>

static int bad = 0;

static void expect(const char* what, unsigned block, unsigned t, int got, int want) {
    if (got != want && bad++ < 20)
        std::printf("  %s (block %u) thread %u: got %d want %d\n", what, block, t, got, want);
}

// Each thread's value is its index plus 1000; out[t] is what its shuffle returned.
template <typename Shuffle, typename Want>
static void check(const char* what, unsigned block, Shuffle shuffle, Want want) {
    std::vector<int> out(block, -1);
    launch(1, block, [&] {
        const unsigned t = threadIdx.x;
        out[t] = shuffle((int)t + 1000);
    });
    for (unsigned t = 0; t < block; ++t) {
        const unsigned warp_first = t / 32 * 32;
        const unsigned lanes = std::min(32u, block - warp_first);
        expect(what, block, t, out[t], want((int)(t - warp_first), (int)lanes) + 1000 + (int)warp_first);
    }
}

// A tree reduction over each warp, as linear.cu does: lane 0 ends with the warp's sum.
static void tree_sum(unsigned block) {
    std::vector<int> out(block, -1);
    launch(1, block, [&] {
        int v = (int)threadIdx.x;
        for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_down_sync(0xffffffffu, v, offset);
        out[threadIdx.x] = v;
    });
    for (unsigned first = 0; first < block; first += 32)
        expect("down-tree sum", block, first, out[first], (int)(32 * first + 31 * 32 / 2));
}

int main() {
    for (unsigned block : {32u, 64u, 96u}) {
        check("down 5", block, [](int v) { return __shfl_down_sync(0xffffffffu, v, 5); },
              [](int lane, int) { return lane + 5 < 32 ? lane + 5 : lane; });
        check("up 3", block, [](int v) { return __shfl_up_sync(0xffffffffu, v, 3); },
              [](int lane, int) { return lane >= 3 ? lane - 3 : lane; });
        check("xor 6", block, [](int v) { return __shfl_xor_sync(0xffffffffu, v, 6); },
              [](int lane, int) { return lane ^ 6; });
        check("idx 7", block, [](int v) { return __shfl_sync(0xffffffffu, v, 7); },
              [](int, int) { return 7; });
        check("down 2 width 8", block, [](int v) { return __shfl_down_sync(0xffffffffu, v, 2, 8); },
              [](int lane, int) { return lane % 8 + 2 < 8 ? lane + 2 : lane; });
        // With a width, a lane may read an earlier group but gets its own value from a later one.
        check("xor 16 width 16", block, [](int v) { return __shfl_xor_sync(0xffffffffu, v, 16, 16); },
              [](int lane, int) { return lane < 16 ? lane : lane ^ 16; });
    }
    // A warp of 20 lanes (a 52-thread block): sources past the last lane give the own value.
    check("down 8 partial", 52, [](int v) { return __shfl_down_sync(0xffffffffu, v, 8); },
          [](int lane, int lanes) { return lane + 8 < lanes ? lane + 8 : lane; });
    tree_sum(64);
    tree_sum(96);
    std::printf("warp shuffles: %s\n", bad ? "FAILED" : "ok");
    return bad ? 1 : 0;
}
