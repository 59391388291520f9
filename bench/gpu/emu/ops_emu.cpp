// Runs the small kernels (elementwise, embedding, loss, optim) on the CPU through cuda_shim.h
// against plain loops in double, at sizes around the block sizes.
#include "cuda_shim.h"
#include <cstdio>
#include <random>

#include "elementwise_emu.cu"
#include "embedding_emu.cu"
#include "loss_emu.cu"
#include "optim_emu.cu"

static int bad = 0;
static void expect(const char* name, size_t i, double got, double want, double atol) {
    if (!(std::fabs(got - want) <= atol + 1e-4 * std::fabs(want))) {
        if (bad++ < 20) std::printf("  %s mismatch at %zu: %g want %g\n", name, i, got, want);
    }
}

static std::mt19937 rng(7);
static std::vector<float> random(size_t n, float scale) {
    std::uniform_real_distribution<float> u(-scale, scale);
    std::vector<float> v(n);
    for (auto& x : v) x = u(rng);
    return v;
}

static void elementwise_and_reductions(unsigned n) {
    auto a = random(n, 1.0f), b = random(n, 1.0f);
    std::vector<float> out(n + 1, NAN);
    launch((n + 255) / 256, 256, [&] { mul_fwd_f32(a.data(), b.data(), out.data(), n); });
    for (unsigned i = 0; i < n; ++i) expect("mul", i, out[i], (double)a[i] * b[i], 0);
    if (!std::isnan(out[n])) expect("mul wrote past n", n, out[n], NAN, 0);
    std::vector<float> partials(1024, NAN), acc{0.5f};
    const unsigned blocks = std::clamp((n + 2047) / 2048, 1u, 1024u);
    launch(blocks, 256, [&] { sum_squares_partial_fwd_f32(a.data(), n, partials.data()); });
    launch(1, 256, [&] { sum_squares_final_fwd_f32(partials.data(), blocks, acc.data()); });
    double want = 0.5;
    for (float v : a) want += (double)v * v;
    expect("sum_squares", n, acc[0], want, 1e-5 * std::sqrt((double)n));
}

static void softmax(unsigned batch, unsigned classes) {
    auto logits = random(batch * classes, 3.0f);
    std::vector<unsigned> labels(batch);
    for (auto& l : labels) l = rng() % classes;
    std::vector<float> grad(batch * classes, NAN), stats{0.25f, 1.0f};
    launch(1, 256, [&] {
        softmax_xent_fwd_f32(logits.data(), labels.data(), grad.data(), stats.data(), batch, classes, 1);
    });
    double loss = 0.25, hits = 1.0;
    for (unsigned n = 0; n < batch; ++n) {
        const float* row = &logits[n * classes];
        unsigned best = 0;
        double m = row[0], sum = 0;
        for (unsigned c = 1; c < classes; ++c) if (row[c] > m) { m = row[c]; best = c; }
        for (unsigned c = 0; c < classes; ++c) sum += std::exp(row[c] - m);
        loss += m + std::log(sum) - row[labels[n]];
        hits += best == labels[n];
        for (unsigned c = 0; c < classes; ++c)
            expect("xent grad", n * classes + c, grad[n * classes + c],
                   (std::exp(row[c] - m) / sum - (c == labels[n])) / batch, 1e-6);
    }
    expect("xent loss", batch, stats[0], loss, 1e-5 * std::sqrt((double)batch));
    expect("xent hits", batch, stats[1], hits, 0);
}

// `heavy`: the share of tokens on row 0 (MR's pad row takes about 64% of a batch's tokens).
static void embedding(unsigned vocab, unsigned e, unsigned tokens, unsigned rows, double heavy = 0.0) {
    auto table = random(vocab * e, 0.1f), grad = random(tokens * e, 1.0f);
    std::vector<unsigned> ids(tokens), slots(tokens);
    std::uniform_real_distribution<double> u(0.0, 1.0);
    for (unsigned t = 0; t < tokens; ++t) {
        ids[t] = rng() % vocab;
        slots[t] = t < rows ? t : (u(rng) < heavy ? 0u : rng() % rows);
    }
    if (tokens > rows) slots[tokens - 1] = rows + 3;  // past n_rows: skipped
    std::vector<float> out(tokens * e, NAN), grad_rows(rows * e, NAN);
    launch((tokens * e + 255) / 256, 256, [&] { embedding_fwd_f32(table.data(), ids.data(), out.data(), tokens, e, vocab); });
    for (unsigned i = 0; i < tokens * e; ++i) expect("gather", i, out[i], table[ids[i / e] * e + i % e], 0);
    // Fewer blocks than rows too, so the grid-stride over rows is exercised.
    const unsigned blocks = rows > 3 ? rows / 2 : rows;
    launch(blocks, 128, [&] { embedding_bwd_f32(grad.data(), slots.data(), grad_rows.data(), tokens, e, rows); });
    // The CPU backend's loop: float sums in token order from 0. The kernel must match it bit
    // for bit (no atomics, same order).
    std::vector<float> want(rows * e, 0.0f);
    for (unsigned t = 0; t < tokens; ++t) {
        if (slots[t] >= rows) continue;
        for (unsigned k = 0; k < e; ++k) want[slots[t] * e + k] += grad[t * e + k];
    }
    for (unsigned i = 0; i < rows * e; ++i) expect("grad_rows (bitwise)", i, grad_rows[i], want[i], 0);
    for (unsigned i = 0; i < rows * e; ++i)
        if (std::memcmp(&grad_rows[i], &want[i], 4) != 0 && bad++ < 20)
            std::printf("  grad_rows not bitwise at %u: %.9g want %.9g\n", i, grad_rows[i], want[i]);
}

// The multi-tensor global norm: tensors of lengths around the block size, one empty, summed
// in one partial launch and an overwriting final launch.
static void sum_squares_multi(std::vector<unsigned> lens) {
    std::vector<std::vector<float>> xs;
    TensorList list{};
    list.count = lens.size();
    double want = 0;
    size_t total = 0;
    for (size_t t = 0; t < lens.size(); ++t) {
        xs.push_back(random(lens[t], 1.0f));
        for (float v : xs.back()) want += (double)v * v;
        total += lens[t];
    }
    for (size_t t = 0; t < lens.size(); ++t) { list.ptr[t] = xs[t].data(); list.len[t] = lens[t]; }
    const unsigned blocks = std::clamp<unsigned>((total + 2047) / 2048, 1u, 1024u);
    std::vector<float> partials(1024, NAN), acc{12345.0f};  // overwritten, not accumulated
    launch(blocks, 256, [&] { sum_squares_multi_partial_fwd_f32(list, partials.data()); });
    launch(1, 256, [&] { sum_squares_multi_final_fwd_f32(partials.data(), blocks, acc.data()); });
    expect("sum_squares_multi", lens.size(), acc[0], want, 1e-5 * std::sqrt((double)total + 1));
}

static void rms_ref(double& w, double& n, double& a, double g, bool centered) {
    const double lr = 0.01, decay = 0.9, eps = 1e-8;
    n = decay * n + (1 - decay) * g * g;
    double denom;
    if (centered) { a = decay * a + (1 - decay) * g; denom = std::sqrt(std::max(n - a * a, 0.0)) + eps; }
    else denom = std::sqrt(n) + eps;
    w -= lr * g / denom;
}

static void rmsprop(unsigned len, int centered, float max_norm) {
    auto w = random(len, 0.1f), g = random(len, 1.0f), n = random(len, 0.01f), a = random(len, 0.01f);
    for (auto& v : n) v = std::fabs(v) + 1e-3f;
    double norm_sq = 0;
    for (float v : g) norm_sq += (double)v * v;
    std::vector<float> ns{(float)norm_sq};
    std::vector<double> rw(w.begin(), w.end()), rn(n.begin(), n.end()), ra(a.begin(), a.end());
    const double norm = std::sqrt(norm_sq);
    const double scale = (max_norm > 0 && norm > max_norm) ? max_norm / norm : 1.0;
    for (unsigned i = 0; i < len; ++i) rms_ref(rw[i], rn[i], ra[i], scale * g[i], centered);
    launch((len + 255) / 256, 256, [&] {
        rmsprop_fwd_f32(w.data(), g.data(), n.data(), centered ? a.data() : nullptr, ns.data(), len,
                        0.01f, 0.9f, 1e-8f, max_norm, centered);
    });
    for (unsigned i = 0; i < len; ++i) {
        expect("rmsprop w", i, w[i], rw[i], 1e-6);
        expect("rmsprop n", i, n[i], rn[i], 1e-7);
        if (centered) expect("rmsprop a", i, a[i], ra[i], 1e-7);
    }
}

// The fused update of several tensors against rms_ref, element by element.
// With `device`, the learning rate comes from lr_dev (the host argument is wrong on purpose).
static void rmsprop_multi(std::vector<unsigned> lens, int centered, float max_norm, bool device = false) {
    std::vector<std::vector<float>> w, g, n, a;
    std::vector<std::vector<double>> rw, rn, ra;
    RmsList list{};
    list.count = lens.size();
    const float norm_sq = 7.0f;
    const double norm = std::sqrt((double)norm_sq);
    const double scale = (max_norm > 0 && norm > max_norm) ? max_norm / norm : 1.0;
    size_t total = 0;
    for (unsigned len : lens) {
        w.push_back(random(len, 0.1f)); g.push_back(random(len, 1.0f));
        n.push_back(random(len, 0.01f)); a.push_back(random(len, 0.01f));
        for (auto& v : n.back()) v = std::fabs(v) + 1e-3f;
        rw.emplace_back(w.back().begin(), w.back().end());
        rn.emplace_back(n.back().begin(), n.back().end());
        ra.emplace_back(a.back().begin(), a.back().end());
        total += len;
    }
    for (size_t t = 0; t < lens.size(); ++t) {
        list.w[t] = w[t].data(); list.grad[t] = g[t].data(); list.ms[t] = n[t].data();
        list.mean[t] = centered ? a[t].data() : nullptr; list.len[t] = lens[t];
        for (unsigned i = 0; i < lens[t]; ++i) rms_ref(rw[t][i], rn[t][i], ra[t][i], scale * g[t][i], centered);
    }
    std::vector<float> ns{norm_sq};
    const unsigned blocks = std::min<unsigned>((total + 255) / 256, 4);  // grid-stride too
    const float lr_dev = 0.01f;
    launch(std::max(blocks, 1u), 256, [&] {
        rmsprop_multi_fwd_f32(list, ns.data(), device ? 99.0f : 0.01f, 0.9f, 1e-8f, max_norm, centered,
                              device ? &lr_dev : nullptr);
    });
    for (size_t t = 0; t < lens.size(); ++t)
        for (unsigned i = 0; i < lens[t]; ++i) {
            expect("multi w", i, w[t][i], rw[t][i], 1e-6);
            expect("multi n", i, n[t][i], rn[t][i], 1e-7);
            if (centered) expect("multi a", i, a[t][i], ra[t][i], 1e-7);
        }
}

// With `device`, the step and learning rate come from step_dev and lr_dev (the host arguments
// are wrong on purpose).
static void rmsprop_rows(unsigned vocab, unsigned e, int centered, bool device = false) {
    const unsigned step = 9;
    auto table = random(vocab * e, 0.1f), n = random(vocab * e, 0.01f), a = random(vocab * e, 0.01f);
    for (auto& v : n) v = std::fabs(v) + 1e-3f;
    std::vector<unsigned> last(vocab), rows;
    for (auto& l : last) l = rng() % step;
    for (unsigned r = vocab; r-- > 0;) if (rng() % 2) rows.push_back(r);
    if (rows.empty()) rows.push_back(0);
    auto g = random(rows.size() * e, 1.0f);
    double norm_sq = 0;
    for (float v : g) norm_sq += (double)v * v;
    std::vector<float> ns{(float)norm_sq};
    std::vector<double> rw(table.begin(), table.end()), rn(n.begin(), n.end()), ra(a.begin(), a.end());
    std::vector<unsigned> rlast = last;
    const double scale = std::min(1.0, 0.5 / std::sqrt(norm_sq));
    for (size_t s = 0; s < rows.size(); ++s) {
        const unsigned r = rows[s];
        const double lazy = std::pow(0.9, (double)(step - last[r] - 1));
        for (unsigned k = 0; k < e; ++k) {
            const size_t i = (size_t)r * e + k;
            rn[i] *= lazy;
            if (centered) ra[i] *= lazy;
            rms_ref(rw[i], rn[i], ra[i], scale * g[s * e + k], centered);
        }
        rlast[r] = step;
    }
    const unsigned step_dev = step;
    const float lr_dev = 0.01f;
    launch(rows.size(), 128, [&] {
        rmsprop_rows_fwd_f32(table.data(), g.data(), rows.data(), n.data(), centered ? a.data() : nullptr,
                             last.data(), ns.data(), rows.size(), e, vocab, device ? 1u : step,
                             device ? 99.0f : 0.01f, 0.9f, 1e-8f, 0.5f, centered,
                             device ? &step_dev : nullptr, device ? &lr_dev : nullptr);
    });
    for (size_t i = 0; i < table.size(); ++i) {
        expect("rows w", i, table[i], rw[i], 1e-6);
        expect("rows n", i, n[i], rn[i], 1e-7);
        if (centered) expect("rows a", i, a[i], ra[i], 1e-7);
    }
    for (unsigned r = 0; r < vocab; ++r) expect("rows last_step", r, last[r], rlast[r], 0);
}

// SplitMix64's finalizer, written again here (not taken from elementwise.cu) as the reference.
static unsigned long long mix64_ref(unsigned long long seed, unsigned long long index) {
    const unsigned long long gamma = 0x9E3779B97F4A7C15ull;
    unsigned long long z = seed + index * gamma + gamma;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

// The device step counter: step_advance adds one; dropout_step draws the mask of
// mix64(base, step), the same as dropout_fwd_f32 given that seed.
static void dropout_at_step(unsigned n) {
    std::vector<unsigned> step{41};
    launch(1, 32, [&] { step_advance_fwd_f32(step.data()); });
    expect("step_advance", 0, step[0], 42, 0);
    const unsigned long long base = 0x0d20f0a7ull ^ 11;
    const float p = 0.5f, keep = 1.0f / (1.0f - p);
    auto x = random(n, 1.0f);
    std::vector<float> out(n, NAN), mask(n, NAN), out_ref(n, NAN), mask_ref(n, NAN);
    launch((n + 255) / 256, 256, [&] {
        dropout_step_fwd_f32(x.data(), out.data(), mask.data(), n, p, keep, base, step.data());
    });
    launch((n + 255) / 256, 256, [&] {
        dropout_fwd_f32(x.data(), out_ref.data(), mask_ref.data(), n, p, keep, mix64_ref(base, 42));
    });
    unsigned kept = 0;
    for (unsigned i = 0; i < n; ++i) {
        const float u = (float)(unsigned)(mix64_ref(mix64_ref(base, 42), i) >> 40) * (1.0f / 16777216.0f);
        expect("dropout_step mask", i, mask[i], u >= p ? keep : 0.0f, 0);
        expect("dropout_step out", i, out[i], out_ref[i], 0);
        kept += mask[i] != 0.0f;
    }
    if (n >= 1000 && (kept < n / 3 || kept > 2 * n / 3)) expect("dropout_step keeps about half", kept, kept, n / 2, 0);
}

int main() {
    for (unsigned n : {1u, 257u, 5001u}) dropout_at_step(n);
    for (unsigned n : {1u, 255u, 256u, 257u, 5001u}) elementwise_and_reductions(n);
    for (auto [b, c] : {std::pair{1u, 2u}, {50u, 2u}, {257u, 5u}, {3u, 1u}}) softmax(b, c);
    sum_squares_multi({1});
    sum_squares_multi({300, 0, 255, 256, 257, 5001, 2, 1, 100});
    embedding(1, 1, 1, 1);
    embedding(60, 33, 257, 40);
    embedding(50, 513, 300, 7, 0.64);  // two column passes, a heavy row, chunks of 128 tokens
    embedding(20, 300, 129, 129);
    for (unsigned len : {1u, 257u}) for (int c : {0, 1}) for (float m : {0.0f, 0.5f}) rmsprop(len, c, m);
    for (int c : {0, 1}) for (float m : {0.0f, 0.5f}) { rmsprop_multi({1}, c, m); rmsprop_multi({300, 0, 1025, 7}, c, m); }
    for (int c : {0, 1}) { rmsprop_rows(1, 1, c); rmsprop_rows(50, 129, c); }
    for (int c : {0, 1}) { rmsprop_multi({300, 0, 1025, 7}, c, 0.5f, true); rmsprop_rows(50, 129, c, true); }
    std::printf("small kernels: %s\n", bad ? "FAILED" : "ok");
    return bad ? 1 : 0;
}
