// Runs conv.cu's kernels on the CPU through cuda_shim.h: the per-branch kernels against plain
// loops, on shapes that exercise two position tiles, filter counts off the 32-filter tile, a
// width wider than one staged group of filter rows, and embedding widths off the 32-column
// chunk; then the multi-branch kernels (every branch in one launch) against the per-branch
// kernels, bit for bit, with grids smaller than the work so the grid-stride loops cross
// branches.
#include "cuda_shim.h"
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>

#include "conv_emu.cu"  // conv.cu with `extern __shared__ float4 smem_f4[];` lines removed

struct Shape { unsigned b, l, e, w, f, cols, off; };

// The re-tiled forward (conv_pool_retiled_fwd_f32) over the given branches, as the launcher
// runs it: 160 threads, 100-filter tiles, two chunk buffers for the widest branch; `grid`
// blocks (fewer than the work: the grid-stride loop crosses branches).
static void run_retiled(const float* x, float* pooled, unsigned b, unsigned l, unsigned e,
                        unsigned cols, const std::vector<const float*>& w,
                        const std::vector<const float*>& bias, const std::vector<unsigned*>& argmax,
                        const std::vector<unsigned>& widths, const std::vector<unsigned>& filters,
                        const std::vector<unsigned>& offsets, unsigned grid) {
    ConvBranchList list{};
    list.count = widths.size();
    unsigned tiles = 0;
    for (size_t i = 0; i < widths.size(); ++i) {
        list.w[i] = w[i];
        list.bias[i] = bias[i];
        list.argmax[i] = argmax[i];
        list.width[i] = widths[i];
        list.num_filters[i] = filters[i];
        list.pooled_offset[i] = offsets[i];
        tiles += b * ((filters[i] + 99) / 100);
        list.work_end[i] = tiles;
    }
    launch(std::min(tiles, grid), 160, [&] { conv_pool_retiled_fwd_f32(x, pooled, list, l, e, cols); });
}

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
    // The re-tiled kernel against the same reference (widths up to 5).
    if (s.w <= 5) {
        std::vector<float> rp(s.b * s.cols, NAN);
        std::vector<unsigned> ra(s.b * s.f, 12345u);
        run_retiled(x.data(), rp.data(), s.b, s.l, s.e, s.cols, {w.data()}, {bias.data()}, {ra.data()},
                    {s.w}, {s.f}, {s.off}, 1000);
        for (unsigned i = 0; i < s.b * s.f; ++i) {
            const unsigned b = i / s.f, f = i % s.f;
            const float got = rp[b * s.cols + s.off + f];
            const double want = std::max(best[i], 0.0);
            if (!(std::fabs(got - want) <= 1e-4 + 1e-4 * std::fabs(want)) || ra[i] != best_t[i]) {
                if (bad++ < 5)
                    std::printf("  re-tiled mismatch b %u f %u: pooled %g want %g, argmax %u want %u\n",
                                b, f, got, want, ra[i], best_t[i]);
            }
        }
    }
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

// The j_group and shared bytes the launcher computes (conv.rs, forward_shared_memory).
static unsigned j_group_for(unsigned width) {
    const unsigned x_floats = ((64 + width - 1) * 33 + 3) & ~3u;
    return std::min<unsigned>((12288 - x_floats) / 1024, width);
}

struct Branches { unsigned b, l, e, cols; std::vector<unsigned> widths, filters; unsigned grid; };

static bool same_bits(const char* name, const void* a, const void* b, size_t bytes) {
    if (std::memcmp(a, b, bytes) == 0) return true;
    std::printf("  branches: %s differs from the per-branch kernels\n", name);
    return false;
}

static int check_branches(const Branches& c, unsigned seed) {
    std::mt19937 rng(seed);
    std::uniform_real_distribution<float> u(-1.0f, 1.0f);
    const size_t n = c.widths.size();
    std::vector<float> x(c.b * c.l * c.e);
    for (auto& v : x) v = u(rng);
    std::vector<std::vector<float>> w(n), bias(n);
    std::vector<unsigned> offset(n);
    unsigned cols = 0;
    for (size_t i = 0; i < n; ++i) {
        w[i].resize(c.filters[i] * c.widths[i] * c.e);
        bias[i].resize(c.filters[i]);
        for (auto& v : w[i]) v = 0.1f * u(rng);
        for (auto& v : bias[i]) v = 0.1f * u(rng);
        offset[i] = cols + 1;  // a gap before each branch: columns it must not write
        cols = offset[i] + c.filters[i];
    }
    // Per-branch kernels: the reference.
    std::vector<float> pooled_ref(c.b * cols, NAN), pooled(c.b * cols, NAN);
    std::vector<std::vector<unsigned>> am_ref(n), am(n);
    for (size_t i = 0; i < n; ++i) {
        am_ref[i].assign(c.b * c.filters[i], 7u);
        am[i].assign(c.b * c.filters[i], 9u);
        const unsigned tiles = c.b * ((c.filters[i] + 31) / 32);
        launch(tiles, 128, [&] {
            conv_pool_fwd_f32(x.data(), w[i].data(), bias[i].data(), pooled_ref.data(),
                              am_ref[i].data(), c.b, c.l, c.e, c.widths[i], c.filters[i], cols,
                              offset[i], j_group_for(c.widths[i]));
        });
    }
    ConvBranchList list{};
    list.count = n;
    unsigned tiles = 0;
    for (size_t i = 0; i < n; ++i) {
        list.w[i] = w[i].data();
        list.bias[i] = bias[i].data();
        list.argmax[i] = am[i].data();
        list.width[i] = c.widths[i];
        list.num_filters[i] = c.filters[i];
        list.pooled_offset[i] = offset[i];
        list.j_group[i] = j_group_for(c.widths[i]);
        tiles += c.b * ((c.filters[i] + 31) / 32);
        list.work_end[i] = tiles;
    }
    launch(std::min(tiles, c.grid), 128,
           [&] { conv_pool_branches_fwd_f32(x.data(), pooled.data(), list, c.l, c.e, cols); });
    bool ok = true;
    // The gaps stay NaN in both, and NaN bits compare equal.
    ok &= same_bits("pooled", pooled.data(), pooled_ref.data(), pooled.size() * 4);
    for (size_t i = 0; i < n; ++i) ok &= same_bits("argmax", am[i].data(), am_ref[i].data(), am[i].size() * 4);
    // The re-tiled kernel: the narrow branches (width <= 5) in one launch against one launch
    // each, bit for bit.
    {
        std::vector<const float*> nw, nb;
        std::vector<unsigned*> na_all, na_one;
        std::vector<unsigned> nwid, nf, noff;
        std::vector<std::vector<unsigned>> all(n), one(n);
        std::vector<float> p_all(c.b * cols, NAN), p_one(c.b * cols, NAN);
        for (size_t i = 0; i < n; ++i) {
            if (c.widths[i] > 5) continue;
            all[i].assign(c.b * c.filters[i], 1u);
            one[i].assign(c.b * c.filters[i], 2u);
            nw.push_back(w[i].data()); nb.push_back(bias[i].data());
            na_all.push_back(all[i].data());
            nwid.push_back(c.widths[i]); nf.push_back(c.filters[i]); noff.push_back(offset[i]);
            run_retiled(x.data(), p_one.data(), c.b, c.l, c.e, cols, {w[i].data()}, {bias[i].data()},
                        {one[i].data()}, {c.widths[i]}, {c.filters[i]}, {offset[i]}, 2);
        }
        if (!nw.empty()) {
            run_retiled(x.data(), p_all.data(), c.b, c.l, c.e, cols, nw, nb, na_all, nwid, nf, noff, c.grid);
            ok &= same_bits("re-tiled pooled", p_all.data(), p_one.data(), p_all.size() * 4);
            for (size_t i = 0; i < n; ++i)
                ok &= same_bits("re-tiled argmax", all[i].data(), one[i].data(), all[i].size() * 4);
        }
    }
    // Backward: per-branch weights and data kernels onto a zeroed grad_x, against the two
    // multi-branch launches overwriting a poisoned grad_x.
    std::vector<float> gp(c.b * cols);
    for (auto& v : gp) v = u(rng);
    std::vector<float> gx_ref(x.size(), 0.0f), gx(x.size(), NAN);
    std::vector<std::vector<float>> gw_ref(n), gb_ref(n), gw(n), gb(n);
    const unsigned threads = std::clamp((c.e + 31) / 32 * 32, 32u, 512u);
    unsigned weights = 0, filters = 0;
    ConvBranchList wl = list, dl = list;
    for (size_t i = 0; i < n; ++i) {
        const unsigned w_len = c.filters[i] * c.widths[i] * c.e;
        gw_ref[i].assign(w_len, NAN);
        gb_ref[i].assign(c.filters[i], NAN);
        gw[i].assign(w_len, NAN);
        gb[i].assign(c.filters[i], NAN);
        launch((w_len + 255) / 256, 256, [&] {
            conv_pool_weights_bwd_f32(gp.data(), pooled_ref.data(), am_ref[i].data(), x.data(),
                                      gw_ref[i].data(), gb_ref[i].data(), c.b, c.l, c.e,
                                      c.widths[i], c.filters[i], cols, offset[i]);
        });
        launch(std::min(c.b * c.l, 16u), threads, [&] {
            conv_pool_data_bwd_f32(gp.data(), pooled_ref.data(), am_ref[i].data(), w[i].data(),
                                   gx_ref.data(), c.b, c.l, c.e, c.widths[i], c.filters[i], cols,
                                   offset[i]);
        });
        wl.grad_w[i] = gw[i].data();
        wl.grad_b[i] = gb[i].data();
        weights += w_len;
        wl.work_end[i] = weights;
        filters += c.filters[i];
        dl.work_end[i] = filters;
    }
    launch(std::min((weights + 255) / 256, c.grid), 256, [&] {
        conv_pool_branches_weights_bwd_f32(gp.data(), pooled.data(), x.data(), wl, c.b, c.l, c.e, cols);
    });
    launch(std::min(c.b * c.l, c.grid), threads, [&] {
        conv_pool_branches_data_bwd_f32(gp.data(), pooled.data(), gx.data(), dl, c.b, c.l, c.e, cols);
    });
    for (size_t i = 0; i < n; ++i) {
        ok &= same_bits("grad_w", gw[i].data(), gw_ref[i].data(), gw[i].size() * 4);
        ok &= same_bits("grad_b", gb[i].data(), gb_ref[i].data(), gb[i].size() * 4);
    }
    ok &= same_bits("grad_x", gx.data(), gx_ref.data(), gx.size() * 4);
    std::printf("branches b %u l %u e %u, %zu widths, grid %u: %s\n", c.b, c.l, c.e, n, c.grid,
                ok ? "ok (bit for bit)" : "FAILED");
    return ok ? 0 : 1;
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
    const Branches multi[] = {
        {2, 20, 40, 0, {3, 4, 5}, {33, 5, 40}, 3},
        {1, 30, 33, 0, {1, 12}, {7, 64}, 2},
        {3, 9, 5, 0, {2, 3, 4, 5, 6, 7, 8, 9}, {1, 2, 3, 4, 5, 6, 7, 8}, 5},
        {2, 56, 300, 0, {3, 4, 5}, {100, 100, 100}, 7},
    };
    for (const auto& c : multi) bad += check_branches(c, seed++);
    return bad ? 1 : 0;
}
