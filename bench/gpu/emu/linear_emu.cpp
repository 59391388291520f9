// Runs linear.cu's two kernels on the CPU through cuda_shim.h (its warp shuffles included)
// against plain loops in double: one warp per output reduced by __shfl_down_sync in the forward
// pass, one thread per gradient element in the backward pass. Shapes cover in_features below,
// at and off the 32-lane stride, outputs past one block of warps, and grids small enough that
// the grid-stride loops go round more than once.
#include "cuda_shim.h"
#include <cstdio>
#include <random>

#include "linear_emu.cu"

struct Shape { unsigned batch, in, out, max_blocks; };

static int bad = 0;
static void expect(const char* name, size_t i, double got, double want, double atol) {
    if (!(std::fabs(got - want) <= atol + 1e-5 * std::fabs(want))) {
        if (bad++ < 20) std::printf("  %s mismatch at %zu: %.9g want %.9g\n", name, i, got, want);
    }
}

// The launcher's grid: blocks of 256 threads covering `n` items, capped (as at 32 a
// multiprocessor on a GPU; small caps here make the kernels stride).
static unsigned grid(size_t n, unsigned max_blocks) {
    return (unsigned)std::clamp<size_t>((n + 255) / 256, 1, max_blocks);
}

static void check(const Shape& s, unsigned seed) {
    std::mt19937 rng(seed);
    std::uniform_real_distribution<float> u(-1.0f, 1.0f);
    auto fill = [&](size_t n) { std::vector<float> v(n); for (auto& x : v) x = u(rng); return v; };
    const auto x = fill((size_t)s.batch * s.in), w = fill((size_t)s.out * s.in), b = fill(s.out);
    const auto grad_out = fill((size_t)s.batch * s.out);
    const int before = bad;
    std::vector<float> out((size_t)s.batch * s.out + 1, NAN);
    launch(grid((size_t)s.batch * s.out * 32, s.max_blocks), 256, [&] {
        linear_fwd_f32(x.data(), w.data(), b.data(), out.data(), s.batch, s.in, s.out);
    });
    const double atol_fwd = 1e-6 * std::sqrt((double)s.in) + 1e-6;
    for (unsigned n = 0; n < s.batch; ++n)
        for (unsigned o = 0; o < s.out; ++o) {
            double want = b[o];
            for (unsigned i = 0; i < s.in; ++i) want += (double)x[n * s.in + i] * w[o * s.in + i];
            expect("linear fwd", n * s.out + o, out[n * s.out + o], want, atol_fwd);
        }
    if (!std::isnan(out.back())) expect("linear fwd wrote past the end", out.size() - 1, out.back(), NAN, 0);
    std::vector<float> gx(x.size(), NAN), gw(w.size(), NAN), gb(s.out, NAN);
    const size_t total = gx.size() + gw.size() + s.out;
    launch(grid(total, s.max_blocks), 256, [&] {
        linear_bwd_f32(grad_out.data(), x.data(), w.data(), gx.data(), gw.data(), gb.data(), s.batch,
                       s.in, s.out);
    });
    for (unsigned n = 0; n < s.batch; ++n)
        for (unsigned i = 0; i < s.in; ++i) {
            double want = 0;
            for (unsigned o = 0; o < s.out; ++o) want += (double)grad_out[n * s.out + o] * w[o * s.in + i];
            expect("grad_x", n * s.in + i, gx[n * s.in + i], want, 1e-6 * std::sqrt((double)s.out) + 1e-6);
        }
    for (unsigned o = 0; o < s.out; ++o) {
        double want_b = 0;
        for (unsigned n = 0; n < s.batch; ++n) want_b += grad_out[n * s.out + o];
        expect("grad_b", o, gb[o], want_b, 1e-6 * std::sqrt((double)s.batch) + 1e-6);
        for (unsigned i = 0; i < s.in; ++i) {
            double want = 0;
            for (unsigned n = 0; n < s.batch; ++n) want += (double)grad_out[n * s.out + o] * x[n * s.in + i];
            expect("grad_w", o * s.in + i, gw[o * s.in + i], want, 1e-6 * std::sqrt((double)s.batch) + 1e-6);
        }
    }
    std::printf("linear batch %u in %u out %u (at most %u blocks): %s\n", s.batch, s.in, s.out,
                s.max_blocks, bad == before ? "ok" : "FAILED");
}

int main() {
    const Shape shapes[] = {
        {1, 1, 1, 4},   {3, 31, 2, 4},  {2, 32, 9, 4},    {5, 33, 7, 1},
        {4, 65, 3, 2},  {9, 8, 17, 1},  {50, 300, 2, 64}, {7, 129, 40, 3},
    };
    unsigned seed = 11;
    for (const auto& s : shapes) check(s, seed++);
    std::printf("linear kernels: %s\n", bad ? "FAILED" : "ok");
    return bad ? 1 : 0;
}
