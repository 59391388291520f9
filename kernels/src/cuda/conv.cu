// The convolution branch of the text CNN: convolution over time, bias, ReLU and max over time,
// fused in the forward pass; weight, bias and data gradients through the argmax positions.
//
// Layouts (row-major): x [batch, seq_len, E], w [F, width, E], bias [F], pooled [batch, cols]
// (this branch owns cols offset .. offset + F), argmax [batch, F].
//
// Forward as an implicit matrix product: for a sentence b, z[t, f] = bias[f] +
// sum_{j, e} x[b, t + j, e] * w[f, j, e]. A block owns one sentence and a tile of CONV_TF
// filters; it walks the positions in tiles of CONV_TP and the embedding in chunks of CONV_KC
// columns. The x rows of a position tile plus the width - 1 rows after it are staged in shared
// memory once per chunk and reused by every filter row j (the windows of neighbouring positions
// overlap), the filters of a group of j rows are staged beside them, and each thread keeps a
// CONV_RP x CONV_RF register tile of z. The max over time is taken in registers and then across
// the threads of the block, so z never reaches device memory.

#define CONV_TP 64                          // positions per tile
#define CONV_TF 32                          // filters per block
#define CONV_KC 32                          // embedding columns per chunk
#define CONV_RP 4                           // positions per thread
#define CONV_RF 4                           // filters per thread (one float4)
#define CONV_TX (CONV_TF / CONV_RF)         // 8 threads across filters
#define CONV_TY (CONV_TP / CONV_RP)         // 16 threads across positions
#define CONV_THREADS (CONV_TX * CONV_TY)    // 128
#define CONV_XS (CONV_KC + 1)               // padded x row: conflict-free column reads

__device__ __forceinline__ float neg_infinity() { return __int_as_float(0xff800000); }

// Stages x[b, p0 + r, e0 + c] for r < x_rows, c < CONV_KC into xs (zero outside the sentence).
__device__ __forceinline__ void conv_stage_x(float* xs, const float* __restrict__ xb,
                                             unsigned int p0, unsigned int e0,
                                             unsigned int x_rows, unsigned int seq_len,
                                             unsigned int embed_dim) {
    for (unsigned int idx = threadIdx.x; idx < x_rows * CONV_KC; idx += CONV_THREADS) {
        const unsigned int r = idx / CONV_KC;
        const unsigned int c = idx - r * CONV_KC;
        const unsigned int t = p0 + r;
        const unsigned int e = e0 + c;
        xs[r * CONV_XS + c] =
            (t < seq_len && e < embed_dim) ? xb[(size_t)t * embed_dim + e] : 0.0f;
    }
}

// Stages w[f0 + f, j0 + jj, e0 + kk] for jj < jn into ws[jj][kk][f], zero outside the filters.
// Threads read 8 consecutive columns of 4 filters (coalesced 32-byte sectors); the float4 group
// of filters is XOR-swizzled with kk so that these stores and the float4 reads are conflict-free.
__device__ __forceinline__ void conv_stage_w(float* ws, const float* __restrict__ w,
                                             unsigned int f0, unsigned int j0, unsigned int jn,
                                             unsigned int e0, unsigned int width,
                                             unsigned int embed_dim, unsigned int num_filters) {
    const size_t filter_len = (size_t)width * embed_dim;
    for (unsigned int idx = threadIdx.x; idx < jn * CONV_KC * CONV_TF; idx += CONV_THREADS) {
        const unsigned int kk_lo = idx & 7u;
        const unsigned int f_lo = (idx >> 3) & 3u;
        const unsigned int rest = idx >> 5;
        const unsigned int kk = (rest % (CONV_KC / 8)) * 8 + kk_lo;
        const unsigned int rest2 = rest / (CONV_KC / 8);
        const unsigned int f = (rest2 % (CONV_TF / 4)) * 4 + f_lo;
        const unsigned int jj = rest2 / (CONV_TF / 4);
        const unsigned int fg = f0 + f;
        const unsigned int e = e0 + kk;
        float v = 0.0f;
        if (fg < num_filters && e < embed_dim) {
            v = w[(size_t)fg * filter_len + (size_t)(j0 + jj) * embed_dim + e];
        }
        ws[(jj * CONV_KC + kk) * CONV_TF + ((((f >> 2) ^ (kk & 7u))) << 2) + (f & 3u)] = v;
    }
}

// One (sentence, filter tile) of one branch: `tile` < batch * ceil(num_filters / CONV_TF).
// Every thread of the block calls it with the same arguments (it synchronizes the block).
__device__ __forceinline__ void conv_pool_tile(float* smem, const float* __restrict__ x,
                               const float* __restrict__ w, const float* __restrict__ bias,
                               float* __restrict__ pooled, unsigned int* __restrict__ argmax,
                               unsigned int tile, unsigned int seq_len, unsigned int embed_dim,
                               unsigned int width, unsigned int num_filters,
                               unsigned int pooled_cols, unsigned int pooled_offset,
                               unsigned int j_group) {
    const unsigned int positions = seq_len - width + 1;
    const unsigned int x_rows = CONV_TP + width - 1;
    const unsigned int xs_floats = (x_rows * CONV_XS + 3u) & ~3u;
    float* xs = smem;
    float* ws = smem + xs_floats;
    const unsigned int tx = threadIdx.x % CONV_TX;
    const unsigned int ty = threadIdx.x / CONV_TX;
    const unsigned int filter_tiles = (num_filters + CONV_TF - 1) / CONV_TF;
    {
        const unsigned int b = tile / filter_tiles;
        const unsigned int f0 = (tile - b * filter_tiles) * CONV_TF;
        const float* xb = x + (size_t)b * seq_len * embed_dim;
        float best[CONV_RF];
        unsigned int best_t[CONV_RF];
#pragma unroll
        for (int q = 0; q < CONV_RF; ++q) {
            best[q] = neg_infinity();
            best_t[q] = 0;
        }
        for (unsigned int p0 = 0; p0 < positions; p0 += CONV_TP) {
            float acc[CONV_RP][CONV_RF];
#pragma unroll
            for (int i = 0; i < CONV_RP; ++i) {
#pragma unroll
                for (int q = 0; q < CONV_RF; ++q) {
                    acc[i][q] = 0.0f;
                }
            }
            for (unsigned int e0 = 0; e0 < embed_dim; e0 += CONV_KC) {
                for (unsigned int j0 = 0; j0 < width; j0 += j_group) {
                    const unsigned int jn = (width - j0 < j_group) ? width - j0 : j_group;
                    __syncthreads();  // earlier reads of xs and ws are done
                    if (j0 == 0) {
                        conv_stage_x(xs, xb, p0, e0, x_rows, seq_len, embed_dim);
                    }
                    conv_stage_w(ws, w, f0, j0, jn, e0, width, embed_dim, num_filters);
                    __syncthreads();
                    for (unsigned int jj = 0; jj < jn; ++jj) {
                        const float* xrow = xs + (ty * CONV_RP + j0 + jj) * CONV_XS;
                        const float* wrow = ws + jj * CONV_KC * CONV_TF;
#pragma unroll
                        for (unsigned int kk = 0; kk < CONV_KC; ++kk) {
                            const float4 wv = *reinterpret_cast<const float4*>(
                                wrow + kk * CONV_TF + ((tx ^ (kk & 7u)) << 2));
#pragma unroll
                            for (int i = 0; i < CONV_RP; ++i) {
                                const float xv = xrow[i * CONV_XS + kk];
                                acc[i][0] = fmaf(xv, wv.x, acc[i][0]);
                                acc[i][1] = fmaf(xv, wv.y, acc[i][1]);
                                acc[i][2] = fmaf(xv, wv.z, acc[i][2]);
                                acc[i][3] = fmaf(xv, wv.w, acc[i][3]);
                            }
                        }
                    }
                }
            }
            // Fold this position tile into the running max; positions rise, so a strict
            // comparison keeps the first maximizing position.
#pragma unroll
            for (int q = 0; q < CONV_RF; ++q) {
                const unsigned int fg = f0 + tx * CONV_RF + q;
                const float bq = fg < num_filters ? bias[fg] : 0.0f;
#pragma unroll
                for (int i = 0; i < CONV_RP; ++i) {
                    const unsigned int t = p0 + ty * CONV_RP + i;
                    const float z = acc[i][q] + bq;
                    if (t < positions && z > best[q]) {
                        best[q] = z;
                        best_t[q] = t;
                    }
                }
            }
        }
        // Max across the CONV_TY position groups, ties to the earliest position.
        __syncthreads();  // the last chunk's reads of xs are done before it is reused
        float* red_v = smem;
        unsigned int* red_t = reinterpret_cast<unsigned int*>(smem + CONV_TY * CONV_TF);
#pragma unroll
        for (int q = 0; q < CONV_RF; ++q) {
            red_v[ty * CONV_TF + tx * CONV_RF + q] = best[q];
            red_t[ty * CONV_TF + tx * CONV_RF + q] = best_t[q];
        }
        __syncthreads();
        if (threadIdx.x < CONV_TF) {
            const unsigned int f = threadIdx.x;
            float bv = red_v[f];
            unsigned int bt = red_t[f];
            for (unsigned int y = 1; y < CONV_TY; ++y) {
                const float v = red_v[y * CONV_TF + f];
                const unsigned int t = red_t[y * CONV_TF + f];
                if (v > bv || (v == bv && t < bt)) {
                    bv = v;
                    bt = t;
                }
            }
            const unsigned int fg = f0 + f;
            if (fg < num_filters) {
                pooled[(size_t)b * pooled_cols + pooled_offset + fg] = fmaxf(bv, 0.0f);
                argmax[(size_t)b * num_filters + fg] = bt;
            }
        }
    }
}

// Dynamic shared memory: round_up4((CONV_TP + width - 1) * CONV_XS) + j_group * CONV_KC * CONV_TF
// floats; launch with CONV_THREADS threads, any grid (grid-stride over sentence x filter tile).
extern "C" __global__ void __launch_bounds__(CONV_THREADS, 4)
conv_pool_fwd_f32(const float* __restrict__ x, const float* __restrict__ w,
                  const float* __restrict__ bias, float* __restrict__ pooled,
                  unsigned int* __restrict__ argmax, unsigned int batch, unsigned int seq_len,
                  unsigned int embed_dim, unsigned int width, unsigned int num_filters,
                  unsigned int pooled_cols, unsigned int pooled_offset, unsigned int j_group) {
    extern __shared__ float4 smem_f4[];  // float4: the staged filters are read 16 bytes wide
    float* smem = reinterpret_cast<float*>(smem_f4);
    if (blockDim.x != CONV_THREADS || width == 0 || width > seq_len || j_group == 0) {
        return;
    }
    const unsigned int filter_tiles = (num_filters + CONV_TF - 1) / CONV_TF;
    for (unsigned int tile = blockIdx.x; tile < batch * filter_tiles; tile += gridDim.x) {
        // conv_pool_tile synchronizes before its first write of shared memory.
        conv_pool_tile(smem, x, w, bias, pooled, argmax, tile, seq_len, embed_dim, width,
                       num_filters, pooled_cols, pooled_offset, j_group);
    }
}

// ---------------------------------------------------------------- all branches in one launch
// The text CNN's branches (filter widths 3/4/5 by default) read the same x and write disjoint
// columns of pooled, so one launch runs them all: the grid strides over the concatenation of
// every branch's work items (forward: sentence x filter tile; weight gradient: weights; data
// gradient: the rows of x, each summing every branch in order).

#define CONV_MAX_BRANCHES 8

// Up to CONV_MAX_BRANCHES branches, passed by value (the launcher fills it). work_end[i] is the
// exclusive end of branch i's work items in the concatenation (forward: filter tiles times the
// batch; weight gradient: num_filters * width * embed_dim). grad_w and grad_b are null in the
// forward launch.
struct ConvBranchList {
    const float* w[CONV_MAX_BRANCHES];
    const float* bias[CONV_MAX_BRANCHES];
    unsigned int* argmax[CONV_MAX_BRANCHES];
    float* grad_w[CONV_MAX_BRANCHES];
    float* grad_b[CONV_MAX_BRANCHES];
    unsigned int width[CONV_MAX_BRANCHES];
    unsigned int num_filters[CONV_MAX_BRANCHES];
    unsigned int pooled_offset[CONV_MAX_BRANCHES];
    unsigned int j_group[CONV_MAX_BRANCHES];
    unsigned int work_end[CONV_MAX_BRANCHES];
    unsigned int count;
};

// The branch whose work items contain `item` (the last branch when past the end).
__device__ __forceinline__ unsigned int conv_branch_of(const ConvBranchList& list,
                                                       unsigned int item) {
    const unsigned int count = list.count < CONV_MAX_BRANCHES ? list.count : CONV_MAX_BRANCHES;
    unsigned int br = 0;
#pragma unroll
    for (unsigned int i = 0; i + 1 < CONV_MAX_BRANCHES; ++i) {
        if (i + 1 < count && item >= list.work_end[i]) {
            br = i + 1;
        }
    }
    return br;
}

// list.work_end[count - 1], read with constant indices (see conv_branch).
__device__ __forceinline__ unsigned int conv_work_end(const ConvBranchList& list,
                                                      unsigned int count) {
    unsigned int end = 0;
#pragma unroll
    for (unsigned int i = 0; i < CONV_MAX_BRANCHES; ++i) {
        if (i + 1 == count) {
            end = list.work_end[i];
        }
    }
    return end;
}

// One branch's entries of a ConvBranchList. The list is a kernel parameter: indexing its
// arrays with a run-time branch would copy it to local memory (a stack frame and spills), so
// the entries are picked with constant indices.
struct ConvBranch {
    const float* w;
    const float* bias;
    unsigned int* argmax;
    float* grad_w;
    float* grad_b;
    unsigned int width, num_filters, pooled_offset, j_group, start;
};

__device__ __forceinline__ ConvBranch conv_branch(const ConvBranchList& list, unsigned int br) {
    ConvBranch out = {list.w[0], list.bias[0], list.argmax[0], list.grad_w[0], list.grad_b[0],
                      list.width[0], list.num_filters[0], list.pooled_offset[0],
                      list.j_group[0], 0u};
#pragma unroll
    for (unsigned int i = 1; i < CONV_MAX_BRANCHES; ++i) {
        if (i == br) {
            out = {list.w[i], list.bias[i], list.argmax[i], list.grad_w[i], list.grad_b[i],
                   list.width[i], list.num_filters[i], list.pooled_offset[i], list.j_group[i],
                   list.work_end[i - 1]};
        }
    }
    return out;
}

// Dynamic shared memory: the largest of the branches' conv_pool_fwd_f32 needs; CONV_THREADS
// threads, any grid (grid-stride over every branch's sentence x filter tiles).
extern "C" __global__ void __launch_bounds__(CONV_THREADS, 4)
conv_pool_branches_fwd_f32(const float* __restrict__ x, float* __restrict__ pooled,
                           const ConvBranchList list, unsigned int seq_len,
                           unsigned int embed_dim, unsigned int pooled_cols) {
    extern __shared__ float4 smem_f4[];
    float* smem = reinterpret_cast<float*>(smem_f4);
    const unsigned int count = list.count < CONV_MAX_BRANCHES ? list.count : CONV_MAX_BRANCHES;
    if (blockDim.x != CONV_THREADS || count == 0) {
        return;
    }
    const unsigned int end = conv_work_end(list, count);
    for (unsigned int item = blockIdx.x; item < end; item += gridDim.x) {
        const ConvBranch br = conv_branch(list, conv_branch_of(list, item));
        if (br.width == 0 || br.width > seq_len || br.j_group == 0) {
            continue;  // uniform across the block: every thread skips together
        }
        conv_pool_tile(smem, x, br.w, br.bias, pooled, br.argmax, item - br.start, seq_len,
                       embed_dim, br.width, br.num_filters, pooled_cols, br.pooled_offset,
                       br.j_group);
    }
}

// The ReLU-gated upstream gradient g[b, f] (zero where the pooled output was not positive).
__device__ __forceinline__ float conv_gate(const float* __restrict__ grad_pooled,
                                           const float* __restrict__ pooled, unsigned int b,
                                           unsigned int f, unsigned int pooled_cols,
                                           unsigned int pooled_offset) {
    const size_t col = (size_t)b * pooled_cols + pooled_offset + f;
    return pooled[col] > 0.0f ? grad_pooled[col] : 0.0f;
}

// grad_w[i] for the weight i = (f, j, e) with rem = j * embed_dim + e, and grad_b[f] when
// rem == 0: sums over the batch in order (deterministic).
__device__ __forceinline__ void conv_weight_grad(
    const float* __restrict__ grad_pooled, const float* __restrict__ pooled,
    const unsigned int* __restrict__ argmax, const float* __restrict__ x,
    float* __restrict__ grad_w, float* __restrict__ grad_b, size_t i, unsigned int f, size_t rem,
    unsigned int batch, unsigned int seq_len, unsigned int embed_dim, unsigned int width,
    unsigned int num_filters, unsigned int pooled_cols, unsigned int pooled_offset) {
    const unsigned int j = (unsigned int)(rem / embed_dim);
    const unsigned int e = (unsigned int)(rem - (size_t)j * embed_dim);
    float acc = 0.0f;
    float acc_b = 0.0f;
    for (unsigned int b = 0; b < batch; ++b) {
        const float g = conv_gate(grad_pooled, pooled, b, f, pooled_cols, pooled_offset);
        const unsigned int t = argmax[(size_t)b * num_filters + f];
        if (g != 0.0f && t + width <= seq_len) {
            acc = fmaf(g, x[((size_t)b * seq_len + t + j) * embed_dim + e], acc);
        }
        acc_b += g;
    }
    grad_w[i] = acc;
    if (rem == 0) {
        grad_b[f] = acc_b;
    }
}

// grad_w[f, j, e] = sum_b g[b, f] * x[b, argmax[b, f] + j, e] and grad_b[f] = sum_b g[b, f]
// (overwrite). One thread per weight, summing over the batch in order: deterministic.
extern "C" __global__ void conv_pool_weights_bwd_f32(
    const float* __restrict__ grad_pooled, const float* __restrict__ pooled,
    const unsigned int* __restrict__ argmax, const float* __restrict__ x,
    float* __restrict__ grad_w, float* __restrict__ grad_b, unsigned int batch,
    unsigned int seq_len, unsigned int embed_dim, unsigned int width, unsigned int num_filters,
    unsigned int pooled_cols, unsigned int pooled_offset) {
    const size_t filter_len = (size_t)width * embed_dim;
    const size_t total = (size_t)num_filters * filter_len;
    const size_t stride = (size_t)blockDim.x * gridDim.x;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += stride) {
        const unsigned int f = (unsigned int)(i / filter_len);
        conv_weight_grad(grad_pooled, pooled, argmax, x, grad_w, grad_b, i, f,
                         i - (size_t)f * filter_len, batch, seq_len, embed_dim, width,
                         num_filters, pooled_cols, pooled_offset);
    }
}

// grad_x[b, t, e] += sum_{f : argmax[b, f] <= t < argmax[b, f] + width} g[b, f] *
// w[f, t - argmax[b, f], e] (accumulate, so the branches add up). One block per (b, t) row with
// the sentence's gates and argmax staged in shared memory (2 * F words of dynamic shared
// memory); the filter loop is uniform across the block and runs in order: deterministic.
extern "C" __global__ void conv_pool_data_bwd_f32(
    const float* __restrict__ grad_pooled, const float* __restrict__ pooled,
    const unsigned int* __restrict__ argmax, const float* __restrict__ w,
    float* __restrict__ grad_x, unsigned int batch, unsigned int seq_len,
    unsigned int embed_dim, unsigned int width, unsigned int num_filters,
    unsigned int pooled_cols, unsigned int pooled_offset) {
    extern __shared__ float4 smem_f4[];
    float* smem = reinterpret_cast<float*>(smem_f4);
    float* gates = smem;
    unsigned int* starts = reinterpret_cast<unsigned int*>(smem + num_filters);
    const size_t filter_len = (size_t)width * embed_dim;
    for (unsigned int row = blockIdx.x; row < batch * seq_len; row += gridDim.x) {
        const unsigned int b = row / seq_len;
        const unsigned int t = row - b * seq_len;
        __syncthreads();  // the previous row's reads of gates and starts are done
        for (unsigned int f = threadIdx.x; f < num_filters; f += blockDim.x) {
            gates[f] = conv_gate(grad_pooled, pooled, b, f, pooled_cols, pooled_offset);
            starts[f] = argmax[(size_t)b * num_filters + f];
        }
        __syncthreads();
        for (unsigned int e = threadIdx.x; e < embed_dim; e += blockDim.x) {
            float acc = 0.0f;
            bool touched = false;
            for (unsigned int f = 0; f < num_filters; ++f) {
                const unsigned int a = starts[f];
                const float g = gates[f];
                if (g != 0.0f && t >= a && t - a < width) {
                    acc = fmaf(g, w[(size_t)f * filter_len + (size_t)(t - a) * embed_dim + e],
                               acc);
                    touched = true;
                }
            }
            if (touched) {
                grad_x[(size_t)row * embed_dim + e] += acc;
            }
        }
    }
}

// Every branch's grad_w and grad_b (overwrite), as conv_pool_weights_bwd_f32 computes each:
// the grid strides over the concatenated weights (list.work_end: their cumulative counts).
extern "C" __global__ void conv_pool_branches_weights_bwd_f32(
    const float* __restrict__ grad_pooled, const float* __restrict__ pooled,
    const float* __restrict__ x, const ConvBranchList list, unsigned int batch,
    unsigned int seq_len, unsigned int embed_dim, unsigned int pooled_cols) {
    const unsigned int count = list.count < CONV_MAX_BRANCHES ? list.count : CONV_MAX_BRANCHES;
    if (count == 0) {
        return;
    }
    const size_t total = conv_work_end(list, count);
    const size_t stride = (size_t)blockDim.x * gridDim.x;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += stride) {
        const ConvBranch br = conv_branch(list, conv_branch_of(list, (unsigned int)i));
        const size_t local = i - br.start;
        const size_t filter_len = (size_t)br.width * embed_dim;
        const unsigned int f = (unsigned int)(local / filter_len);
        conv_weight_grad(grad_pooled, pooled, br.argmax, x, br.grad_w, br.grad_b, local, f,
                         local - (size_t)f * filter_len, batch, seq_len, embed_dim, br.width,
                         br.num_filters, pooled_cols, br.pooled_offset);
    }
}

// grad_x[b, t, e] = sum over branches, in order, of conv_pool_data_bwd_f32's sum for that branch
// (overwrite: with grad_x zeroed first, the per-branch kernels add the same terms in the same
// order, so the result is the same bit for bit). One block per (b, t) row; every branch's gates
// and argmax are staged in shared memory (2 * sum of num_filters words, filters of branch i
// from list.work_end[i - 1] on: the launcher passes the cumulative filter counts there).
extern "C" __global__ void conv_pool_branches_data_bwd_f32(
    const float* __restrict__ grad_pooled, const float* __restrict__ pooled,
    float* __restrict__ grad_x, const ConvBranchList list, unsigned int batch,
    unsigned int seq_len, unsigned int embed_dim, unsigned int pooled_cols) {
    extern __shared__ float4 smem_f4[];
    float* smem = reinterpret_cast<float*>(smem_f4);
    const unsigned int count = list.count < CONV_MAX_BRANCHES ? list.count : CONV_MAX_BRANCHES;
    if (count == 0) {
        return;
    }
    const unsigned int all_filters = conv_work_end(list, count);
    float* gates = smem;
    unsigned int* starts = reinterpret_cast<unsigned int*>(smem + all_filters);
    for (unsigned int row = blockIdx.x; row < batch * seq_len; row += gridDim.x) {
        const unsigned int b = row / seq_len;
        const unsigned int t = row - b * seq_len;
        __syncthreads();  // the previous row's reads of gates and starts are done
        for (unsigned int i = 0; i < count; ++i) {
            const ConvBranch br = conv_branch(list, i);
            for (unsigned int f = threadIdx.x; f < br.num_filters; f += blockDim.x) {
                gates[br.start + f] =
                    conv_gate(grad_pooled, pooled, b, f, pooled_cols, br.pooled_offset);
                starts[br.start + f] = br.argmax[(size_t)b * br.num_filters + f];
            }
        }
        __syncthreads();
        for (unsigned int e = threadIdx.x; e < embed_dim; e += blockDim.x) {
            float out = 0.0f;
            for (unsigned int i = 0; i < count; ++i) {
                const ConvBranch br = conv_branch(list, i);
                const size_t filter_len = (size_t)br.width * embed_dim;
                float acc = 0.0f;
                bool touched = false;
                for (unsigned int f = 0; f < br.num_filters; ++f) {
                    const unsigned int a = starts[br.start + f];
                    const float g = gates[br.start + f];
                    if (g != 0.0f && t >= a && t - a < br.width) {
                        acc = fmaf(g,
                                   br.w[(size_t)f * filter_len + (size_t)(t - a) * embed_dim + e],
                                   acc);
                        touched = true;
                    }
                }
                if (touched) {
                    out += acc;
                }
            }
            grad_x[(size_t)row * embed_dim + e] = out;
        }
    }
}

// ---------------------------------------------------------------- re-tiled forward (study shapes)
// The study's branches have 52 to 54 positions (seq_len 56, widths 3 to 5), 100 filters and an
// embedding of 300 columns. conv_pool_tile pads them to 64 positions, 128 filters (4 tiles of
// 32) and 320 columns: about 1.6 times the arithmetic. This kernel tiles them as they are: a
// block owns one sentence and CONV_RT_TF = 100 filters (20 x 5 threads across filters, each
// with 5 filters) over CONV_RT_TP = 56 positions (8 x 7 positions), and walks the embedding in
// chunks of CONV_RT_KC = 10 columns (300 = 30 chunks), every filter row of the branch staged
// at once. The next chunk is copied into a second shared-memory buffer with cp.async while the
// current one is computed (double buffering), so the loads overlap the arithmetic. Widths up
// to CONV_RT_MAX_WIDTH fit in 48 KB of shared memory; the launcher uses conv_pool_tile for
// wider filters. Same results as conv_pool_tile up to the order of the sums (chunks of 10
// columns instead of 32).

#define CONV_RT_TP 56                            // positions per tile
#define CONV_RT_TF 100                           // filters per block
#define CONV_RT_KC 10                            // embedding columns per chunk
#define CONV_RT_RP 7                             // positions per thread
#define CONV_RT_RF 5                             // filters per thread
#define CONV_RT_TX (CONV_RT_TF / CONV_RT_RF)     // 20 threads across filters
#define CONV_RT_TY (CONV_RT_TP / CONV_RT_RP)     // 8 threads across positions
#define CONV_RT_THREADS (CONV_RT_TX * CONV_RT_TY)  // 160: five full warps
#define CONV_RT_XS (CONV_RT_KC + 1)              // padded x row: 7 * 11 rows apart = bank 13
#define CONV_RT_MAX_WIDTH 5

// Floats of one of the two chunk buffers for filters of width `width`: the x rows, rounded up
// to 4, then width * KC * TF filter values.
__device__ __forceinline__ unsigned int conv_rt_buffer_floats(unsigned int width) {
    return (((CONV_RT_TP + width - 1) * CONV_RT_XS + 3u) & ~3u) +
           width * CONV_RT_KC * CONV_RT_TF;
}

#if defined(__CUDACC_RTC__) || defined(__CUDACC__)
// dst[0] = valid ? src[0] : 0, asynchronously (cp.async, sm_80 and later; zero-filled when the
// source size is 0, in which case src is not read).
__device__ __forceinline__ void conv_rt_copy(float* dst, const float* src, bool valid) {
    const unsigned int saddr = (unsigned int)__cvta_generic_to_shared(dst);
    asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(saddr), "l"(src),
                 "r"(valid ? 4 : 0));
}
__device__ __forceinline__ void conv_rt_wait() { asm volatile("cp.async.wait_all;\n" ::); }
#else
// The CPU emulator copies at once (a stronger order than the device's).
inline void conv_rt_copy(float* dst, const float* src, bool valid) { *dst = valid ? *src : 0.0f; }
inline void conv_rt_wait() {}
#endif

// Starts copying chunk e0 of the x rows p0 .. p0 + TP + width - 2 and of every filter row into
// `buf` (xs then ws[(j * KC + kk) * TF + f]); zero outside the sentence, the filters and E.
__device__ __forceinline__ void conv_rt_stage(float* buf, const float* __restrict__ xb,
                                              const float* __restrict__ w, unsigned int p0,
                                              unsigned int f0, unsigned int e0,
                                              unsigned int seq_len, unsigned int embed_dim,
                                              unsigned int width, unsigned int num_filters) {
    const unsigned int x_rows = CONV_RT_TP + width - 1;
    const unsigned int xs_floats = (x_rows * CONV_RT_XS + 3u) & ~3u;
    for (unsigned int idx = threadIdx.x; idx < x_rows * CONV_RT_KC; idx += CONV_RT_THREADS) {
        const unsigned int r = idx / CONV_RT_KC;
        const unsigned int c = idx - r * CONV_RT_KC;
        const unsigned int t = p0 + r;
        const unsigned int e = e0 + c;
        const bool valid = t < seq_len && e < embed_dim;
        conv_rt_copy(&buf[r * CONV_RT_XS + c], valid ? &xb[(size_t)t * embed_dim + e] : xb,
                     valid);
    }
    float* ws = buf + xs_floats;
    const size_t filter_len = (size_t)width * embed_dim;
    for (unsigned int idx = threadIdx.x; idx < width * CONV_RT_KC * CONV_RT_TF;
         idx += CONV_RT_THREADS) {
        const unsigned int kk = idx % CONV_RT_KC;
        const unsigned int rest = idx / CONV_RT_KC;
        const unsigned int f = rest % CONV_RT_TF;
        const unsigned int j = rest / CONV_RT_TF;
        const unsigned int fg = f0 + f;
        const unsigned int e = e0 + kk;
        const bool valid = fg < num_filters && e < embed_dim;
        conv_rt_copy(&ws[(j * CONV_RT_KC + kk) * CONV_RT_TF + f],
                     valid ? &w[(size_t)fg * filter_len + (size_t)j * embed_dim + e] : w, valid);
    }
}

// One (sentence, 100-filter tile) of one branch with width <= CONV_RT_MAX_WIDTH; every thread
// of the block calls it with the same arguments. Shared memory: two chunk buffers of
// conv_rt_buffer_floats(width) floats.
__device__ __forceinline__ void conv_pool_rt_tile(float* smem, const float* __restrict__ x,
                                                  const float* __restrict__ w,
                                                  const float* __restrict__ bias,
                                                  float* __restrict__ pooled,
                                                  unsigned int* __restrict__ argmax,
                                                  unsigned int tile, unsigned int seq_len,
                                                  unsigned int embed_dim, unsigned int width,
                                                  unsigned int num_filters,
                                                  unsigned int pooled_cols,
                                                  unsigned int pooled_offset) {
    const unsigned int positions = seq_len - width + 1;
    const unsigned int buf_floats = conv_rt_buffer_floats(width);
    const unsigned int xs_floats = ((CONV_RT_TP + width - 1) * CONV_RT_XS + 3u) & ~3u;
    const unsigned int tx = threadIdx.x % CONV_RT_TX;
    const unsigned int ty = threadIdx.x / CONV_RT_TX;
    const unsigned int filter_tiles = (num_filters + CONV_RT_TF - 1) / CONV_RT_TF;
    const unsigned int b = tile / filter_tiles;
    const unsigned int f0 = (tile - b * filter_tiles) * CONV_RT_TF;
    const float* xb = x + (size_t)b * seq_len * embed_dim;
    const unsigned int chunks = (embed_dim + CONV_RT_KC - 1) / CONV_RT_KC;
    float best[CONV_RT_RF];
    unsigned int best_t[CONV_RT_RF];
#pragma unroll
    for (int q = 0; q < CONV_RT_RF; ++q) {
        best[q] = neg_infinity();
        best_t[q] = 0;
    }
    for (unsigned int p0 = 0; p0 < positions; p0 += CONV_RT_TP) {
        float acc[CONV_RT_RP][CONV_RT_RF];
#pragma unroll
        for (int i = 0; i < CONV_RT_RP; ++i) {
#pragma unroll
            for (int q = 0; q < CONV_RT_RF; ++q) {
                acc[i][q] = 0.0f;
            }
        }
        __syncthreads();  // earlier reads of both buffers are done
        conv_rt_stage(smem, xb, w, p0, f0, 0, seq_len, embed_dim, width, num_filters);
        for (unsigned int c = 0; c < chunks; ++c) {
            conv_rt_wait();
            __syncthreads();  // chunk c is in buffer c & 1; buffer (c + 1) & 1 is free
            if (c + 1 < chunks) {
                conv_rt_stage(smem + ((c + 1) & 1u) * buf_floats, xb, w, p0, f0,
                              (c + 1) * CONV_RT_KC, seq_len, embed_dim, width, num_filters);
            }
            const float* xs = smem + (c & 1u) * buf_floats;
            const float* ws = xs + xs_floats;
            for (unsigned int j = 0; j < width; ++j) {
                const float* xrow = xs + (ty * CONV_RT_RP + j) * CONV_RT_XS;
                const float* wrow = ws + j * CONV_RT_KC * CONV_RT_TF + tx * CONV_RT_RF;
#pragma unroll
                for (unsigned int kk = 0; kk < CONV_RT_KC; ++kk) {
                    float wv[CONV_RT_RF];
#pragma unroll
                    for (int q = 0; q < CONV_RT_RF; ++q) {
                        wv[q] = wrow[kk * CONV_RT_TF + q];
                    }
#pragma unroll
                    for (int i = 0; i < CONV_RT_RP; ++i) {
                        const float xv = xrow[i * CONV_RT_XS + kk];
#pragma unroll
                        for (int q = 0; q < CONV_RT_RF; ++q) {
                            acc[i][q] = fmaf(xv, wv[q], acc[i][q]);
                        }
                    }
                }
            }
            __syncthreads();  // reads of buffer c & 1 are done before chunk c + 2 lands there
        }
        // Fold this position tile into the running max (positions rise: strict comparison
        // keeps the first maximizing position).
#pragma unroll
        for (int q = 0; q < CONV_RT_RF; ++q) {
            const unsigned int fg = f0 + tx * CONV_RT_RF + q;
            const float bq = fg < num_filters ? bias[fg] : 0.0f;
#pragma unroll
            for (int i = 0; i < CONV_RT_RP; ++i) {
                const unsigned int t = p0 + ty * CONV_RT_RP + i;
                const float z = acc[i][q] + bq;
                if (t < positions && z > best[q]) {
                    best[q] = z;
                    best_t[q] = t;
                }
            }
        }
    }
    // Max across the CONV_RT_TY position groups, ties to the earliest position.
    __syncthreads();
    float* red_v = smem;
    unsigned int* red_t = reinterpret_cast<unsigned int*>(smem + CONV_RT_TY * CONV_RT_TF);
#pragma unroll
    for (int q = 0; q < CONV_RT_RF; ++q) {
        red_v[ty * CONV_RT_TF + tx * CONV_RT_RF + q] = best[q];
        red_t[ty * CONV_RT_TF + tx * CONV_RT_RF + q] = best_t[q];
    }
    __syncthreads();
    if (threadIdx.x < CONV_RT_TF) {
        const unsigned int f = threadIdx.x;
        float bv = red_v[f];
        unsigned int bt = red_t[f];
        for (unsigned int y = 1; y < CONV_RT_TY; ++y) {
            const float v = red_v[y * CONV_RT_TF + f];
            const unsigned int t = red_t[y * CONV_RT_TF + f];
            if (v > bv || (v == bv && t < bt)) {
                bv = v;
                bt = t;
            }
        }
        const unsigned int fg = f0 + f;
        if (fg < num_filters) {
            pooled[(size_t)b * pooled_cols + pooled_offset + fg] = fmaxf(bv, 0.0f);
            argmax[(size_t)b * num_filters + fg] = bt;
        }
    }
}

// Every branch (each of width <= CONV_RT_MAX_WIDTH) in one launch: the grid strides over the
// concatenated (sentence, 100-filter tile) items of list.work_end. Dynamic shared memory: two
// chunk buffers for the widest branch, 2 * conv_rt_buffer_floats(max width) floats; launch
// with CONV_RT_THREADS threads.
extern "C" __global__ void __launch_bounds__(CONV_RT_THREADS, 2)
conv_pool_retiled_fwd_f32(const float* __restrict__ x, float* __restrict__ pooled,
                          const ConvBranchList list, unsigned int seq_len,
                          unsigned int embed_dim, unsigned int pooled_cols) {
    extern __shared__ float4 smem_f4[];
    float* smem = reinterpret_cast<float*>(smem_f4);
    const unsigned int count = list.count < CONV_MAX_BRANCHES ? list.count : CONV_MAX_BRANCHES;
    if (blockDim.x != CONV_RT_THREADS || count == 0) {
        return;
    }
    const unsigned int end = conv_work_end(list, count);
    for (unsigned int item = blockIdx.x; item < end; item += gridDim.x) {
        const ConvBranch br = conv_branch(list, conv_branch_of(list, item));
        if (br.width == 0 || br.width > seq_len || br.width > CONV_RT_MAX_WIDTH) {
            continue;  // uniform across the block
        }
        conv_pool_rt_tile(smem, x, br.w, br.bias, pooled, br.argmax, item - br.start, seq_len,
                          embed_dim, br.width, br.num_filters, pooled_cols, br.pooled_offset);
    }
}
