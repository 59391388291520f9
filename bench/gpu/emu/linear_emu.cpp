// Runs linear.cu's two kernels on the CPU through cuda_shim.h (its warp shuffles included)
// against plain loops in double: one warp per output reduced by __shfl_down_sync in the forward
// pass, one thread per gradient element in the backward pass. Shapes cover in_features below,
// at and off the 32-lane stride, outputs past one block of warps, and grids small enough that
// the grid-stride loops go round more than once. Then loss.cu's fused head (dropout, linear,
// softmax cross-entropy in one block) against the three separate kernels, bit for bit.
#include "cuda_shim.h"
#include <cstdio>
#include <random>

#include <cstring>

#include "elementwise_emu.cu"
#include "linear_emu.cu"
#include "loss_emu.cu"

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
                       s.in, s.out, nullptr);
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

// head_fwd_f32 against dropout_step_fwd_f32 + linear_fwd_f32 + softmax_xent_fwd_f32.
static void check_head(unsigned batch, unsigned in, unsigned classes, bool dropout, unsigned seed) {
    std::mt19937 rng(seed);
    std::uniform_real_distribution<float> u(-1.0f, 1.0f);
    std::vector<float> pooled(batch * in), w(classes * in), b(classes);
    for (auto& v : pooled) v = std::max(u(rng), 0.0f);
    for (auto& v : w) v = 0.1f * u(rng);
    for (auto& v : b) v = 0.1f * u(rng);
    std::vector<unsigned> labels(batch), step{17};
    for (auto& l : labels) l = rng() % classes;
    const float p = 0.5f, keep = 2.0f;
    const unsigned long long base = 0x0d20f0a7ull ^ seed;
    const size_t len = (size_t)batch * in;
    // The three kernels.
    std::vector<float> d1(len, NAN), m1(len, NAN), l1(batch * classes, NAN), g1(batch * classes, NAN),
        s1{0.5f, 2.0f};
    if (dropout)
        launch((len + 255) / 256, 256, [&] {
            dropout_step_fwd_f32(pooled.data(), d1.data(), m1.data(), len, p, keep, base, step.data());
        });
    const float* features = dropout ? d1.data() : pooled.data();
    launch(std::min<unsigned>((batch * classes + 7) / 8, 64), 256, [&] {
        linear_fwd_f32(features, w.data(), b.data(), l1.data(), batch, in, classes);
    });
    launch(1, 256, [&] {
        softmax_xent_fwd_f32(l1.data(), labels.data(), g1.data(), s1.data(), batch, classes, 1);
    });
    // The fused head.
    std::vector<float> d2(len, NAN), m2(len, NAN), l2(batch * classes, NAN), g2(batch * classes, NAN),
        s2{0.5f, 2.0f};
    launch(1, 256, [&] {
        head_fwd_f32(pooled.data(), w.data(), b.data(), labels.data(), d2.data(), m2.data(), l2.data(),
                     g2.data(), s2.data(), batch, in, classes, p, keep, base,
                     dropout ? step.data() : nullptr, 1);
    });
    auto same = [&](const char* name, const std::vector<float>& a, const std::vector<float>& c) {
        if (std::memcmp(a.data(), c.data(), a.size() * 4) != 0) {
            ++bad;
            std::printf("  head %s differs from the separate kernels (batch %u in %u classes %u)\n",
                        name, batch, in, classes);
        }
    };
    // The backward with the mask fused in, against linear_bwd_f32 then mul_fwd_f32.
    if (dropout) {
        std::vector<float> gx1(len, NAN), gx2(len, NAN), gxm(len, NAN), gw1(classes * in, NAN),
            gw2(classes * in, NAN), gb1(classes, NAN), gb2(classes, NAN);
        const unsigned total = len + classes * in + classes;
        launch(std::min((total + 255) / 256, 8u), 256, [&] {
            linear_bwd_f32(g1.data(), d1.data(), w.data(), gx1.data(), gw1.data(), gb1.data(), batch,
                           in, classes, nullptr);
        });
        launch((len + 255) / 256, 256, [&] { mul_fwd_f32(gx1.data(), m1.data(), gxm.data(), len); });
        launch(std::min((total + 255) / 256, 8u), 256, [&] {
            linear_bwd_f32(g1.data(), d1.data(), w.data(), gx2.data(), gw2.data(), gb2.data(), batch,
                           in, classes, m1.data());
        });
        same("masked grad_x", gx2, gxm);
        same("masked grad_w", gw2, gw1);
        same("masked grad_b", gb2, gb1);
    }
    same("dropped", d2, d1);
    same("mask", m2, m1);
    same("logits", l2, l1);
    same("grad", g2, g1);
    same("stats", s2, s1);
}

int main() {
    const Shape shapes[] = {
        {1, 1, 1, 4},   {3, 31, 2, 4},  {2, 32, 9, 4},    {5, 33, 7, 1},
        {4, 65, 3, 2},  {9, 8, 17, 1},  {50, 300, 2, 64}, {7, 129, 40, 3},
    };
    unsigned seed = 11;
    for (const auto& s : shapes) check(s, seed++);
    check_head(50, 300, 2, true, 1);
    check_head(250, 300, 2, false, 2);
    check_head(7, 33, 5, true, 3);
    check_head(1, 1, 1, true, 4);
    std::printf("linear kernels: %s\n", bad ? "FAILED" : "ok");
    return bad ? 1 : 0;
}
