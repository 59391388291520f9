// Runs conv.cu's three kernels on the CPU through cuda_shim.h against plain loops, on shapes
// that exercise two position tiles, filter counts off the 32-filter tile, a width wider than
// one staged group of filter rows, and embedding widths off the 32-column chunk.
#include "cuda_shim.h"
#include <cstdio>
#include <cstdlib>
#include <random>

#include "conv_emu.cu"  // conv.cu with `extern __shared__ float4 smem_f4[];` lines removed

struct Shape { unsigned b, l, e, w, f, cols, off; };

static int check(const Shape& s, unsigned seed) {
    std::mt19937 rng(seed);
    std::uniform_real_distribution<float> u(-1.0f, 1.0f);
    const unsigned p = s.l - s.w + 1;
    std::vector<float> x(s.b * s.l * s.e), w(s.f * s.w * s.e), bias(s.f);
    for (auto& v : x) v = u(rng);
    for (auto& v : w) v = 0.1f * u(rng);
    for (auto& v : bias) v = 0.1f * u(rng);
    std::vector<float> pooled(s.b * s.cols, NAN);
    std::vector<unsigned> argmax(s.b * s.f, 12345u);
    // Reference: z in double, first maximizing t.
    std::vector<double> best(s.b * s.f, -INFINITY);
    std::vector<unsigned> best_t(s.b * s.f, 0);
    for (unsigned b = 0; b < s.b; ++b)
        for (unsigned f = 0; f < s.f; ++f)
            for (unsigned t = 0; t < p; ++t) {
                double z = bias[f];
                for (unsigned j = 0; j < s.w; ++j)
                    for (unsigned e = 0; e < s.e; ++e)
                        z += (double)x[(b * s.l + t + j) * s.e + e] * w[(f * s.w + j) * s.e + e];
                if (z > best[b * s.f + f]) { best[b * s.f + f] = z; best_t[b * s.f + f] = t; }
            }
    const unsigned x_floats = ((64 + s.w - 1) * 33 + 3) & ~3u;
    unsigned j_group = std::min<unsigned>((12288 - x_floats) / 1024, s.w);
    const unsigned tiles = s.b * ((s.f + 31) / 32);
    launch(tiles, 128, [&] {
        conv_pool_fwd_f32(x.data(), w.data(), bias.data(), pooled.data(), argmax.data(), s.b, s.l,
                          s.e, s.w, s.f, s.cols, s.off, j_group);
    });
    int bad = 0;
    for (unsigned i = 0; i < s.b * s.f; ++i) {
        const unsigned b = i / s.f, f = i % s.f;
        const float got = pooled[b * s.cols + s.off + f];
        const double want = std::max(best[i], 0.0);
        if (!(std::fabs(got - want) <= 1e-4 + 1e-4 * std::fabs(want)) || argmax[i] != best_t[i]) {
            if (bad++ < 5)
                std::printf("  fwd mismatch b %u f %u: pooled %g want %g, argmax %u want %u\n", b, f,
                            got, want, argmax[i], best_t[i]);
        }
    }
    // Backward: weights and bias (overwrite), data (accumulate).
    std::vector<float> gp(s.b * s.cols), gw(w.size(), NAN), gb(s.f, NAN), gx(x.size());
    for (auto& v : gp) v = u(rng);
    for (auto& v : gx) v = u(rng);
    std::vector<double> rw(w.size(), 0.0), rb(s.f, 0.0), rx(gx.begin(), gx.end());
    for (unsigned b = 0; b < s.b; ++b)
        for (unsigned f = 0; f < s.f; ++f) {
            const unsigned col = b * s.cols + s.off + f;
            const double g = pooled[col] > 0 ? gp[col] : 0.0;
            rb[f] += g;
            const unsigned a = argmax[b * s.f + f];
            for (unsigned j = 0; j < s.w; ++j)
                for (unsigned e = 0; e < s.e; ++e) {
                    rw[(f * s.w + j) * s.e + e] += g * x[(b * s.l + a + j) * s.e + e];
                    rx[(b * s.l + a + j) * s.e + e] += g * w[(f * s.w + j) * s.e + e];
                }
        }
    const unsigned w_len = s.f * s.w * s.e;
    launch((w_len + 255) / 256, 256, [&] {
        conv_pool_weights_bwd_f32(gp.data(), pooled.data(), argmax.data(), x.data(), gw.data(),
                                  gb.data(), s.b, s.l, s.e, s.w, s.f, s.cols, s.off);
    });
    const unsigned threads = std::clamp((s.e + 31) / 32 * 32, 32u, 512u);
    launch(std::min(s.b * s.l, 64u), threads, [&] {
        conv_pool_data_bwd_f32(gp.data(), pooled.data(), argmax.data(), w.data(), gx.data(), s.b,
                               s.l, s.e, s.w, s.f, s.cols, s.off);
    });
    auto cmp = [&](const char* name, const std::vector<float>& got, const std::vector<double>& want) {
        for (size_t i = 0; i < got.size(); ++i)
            if (!(std::fabs(got[i] - want[i]) <= 1e-4 + 1e-4 * std::fabs(want[i]))) {
                if (bad++ < 10) std::printf("  %s mismatch at %zu: %g want %g\n", name, i, got[i], want[i]);
            }
    };
    cmp("grad_w", gw, rw);
    cmp("grad_b", gb, rb);
    cmp("grad_x", gx, rx);
    std::printf("shape b %u l %u e %u w %u f %u (cols %u off %u): %s\n", s.b, s.l, s.e, s.w, s.f,
                s.cols, s.off, bad ? "FAILED" : "ok");
    return bad;
}

int main() {
    const Shape shapes[] = {
        {1, 1, 1, 1, 1, 1, 0},      {2, 7, 3, 3, 5, 7, 1},    {2, 70, 33, 4, 33, 37, 2},
        {1, 131, 20, 3, 31, 31, 0}, {2, 20, 65, 5, 40, 46, 3}, {1, 30, 40, 12, 40, 40, 0},
        {2, 56, 300, 5, 100, 300, 200},
    };
    int bad = 0;
    unsigned seed = 1;
    for (const auto& s : shapes) bad += check(s, seed++);
    return bad ? 1 : 0;
}
