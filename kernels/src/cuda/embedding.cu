// Embedding lookup and its gradient compacted to the rows a batch touched.
//
// Every kernel has a bounds guard and a grid-stride loop over elements (token, column).

// out[t*E + e] = table[ids[t]*E + e]; an id >= vocab is clamped to vocab - 1 (the trait lets
// devices clamp; callers validate ids once on upload).
extern "C" __global__ void embedding_fwd_f32(const float* __restrict__ table,
                                             const unsigned int* __restrict__ ids,
                                             float* __restrict__ out, unsigned int n_tokens,
                                             unsigned int embed_dim, unsigned int vocab) {
    const size_t total = (size_t)n_tokens * embed_dim;
    const size_t stride = (size_t)blockDim.x * gridDim.x;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += stride) {
        const size_t t = i / embed_dim;
        const size_t e = i - t * embed_dim;
        unsigned int id = ids[t];
        if (id >= vocab) {
            id = vocab - 1;
        }
        out[i] = table[(size_t)id * embed_dim + e];
    }
}

// Threads a block of embedding_bwd_f32 (the launcher's block size; the scan below assumes it).
#define EMB_BWD_THREADS 128
// Columns each thread accumulates a pass (a pass covers EMB_BWD_THREADS * EMB_BWD_COLS columns).
#define EMB_BWD_COLS 4

// grad_rows[r*E + e] = sum over t with slots[t] == r, in increasing t, of grad_out[t*E + e]
// (overwrite; every element of the n_rows rows is written). Deterministic, no atomics: a block
// owns a row, walks the token list in chunks of EMB_BWD_THREADS, compacts the chunk's tokens of
// its row in token order with a block-wide prefix sum, and each thread adds those tokens'
// values to its EMB_BWD_COLS columns in that order, starting from 0. That is the CPU backend's
// order, so the result is bitwise the CPU's and the same on every run. Slots >= n_rows match
// no row and are skipped. Must be launched with EMB_BWD_THREADS threads a block.
extern "C" __global__ void __launch_bounds__(EMB_BWD_THREADS)
embedding_bwd_f32(const float* __restrict__ grad_out, const unsigned int* __restrict__ slots,
                  float* __restrict__ grad_rows, unsigned int n_tokens, unsigned int embed_dim,
                  unsigned int n_rows) {
    __shared__ unsigned int scan[EMB_BWD_THREADS];
    __shared__ unsigned int chunk_tokens[EMB_BWD_THREADS];
    const unsigned int tid = threadIdx.x;
    for (unsigned int row = blockIdx.x; row < n_rows; row += gridDim.x) {
        for (unsigned int col0 = 0; col0 < embed_dim; col0 += EMB_BWD_THREADS * EMB_BWD_COLS) {
            float acc[EMB_BWD_COLS];
#pragma unroll
            for (int k = 0; k < EMB_BWD_COLS; ++k) {
                acc[k] = 0.0f;
            }
            for (unsigned int base = 0; base < n_tokens; base += EMB_BWD_THREADS) {
                const unsigned int t = base + tid;
                const unsigned int hit = (t < n_tokens && slots[t] == row) ? 1u : 0u;
                scan[tid] = hit;
                __syncthreads();
                // Inclusive Hillis-Steele scan: scan[i] = hits among chunk tokens 0..=i.
                for (unsigned int offset = 1; offset < EMB_BWD_THREADS; offset <<= 1) {
                    const unsigned int left = tid >= offset ? scan[tid - offset] : 0u;
                    __syncthreads();
                    scan[tid] += left;
                    __syncthreads();
                }
                if (hit) {
                    chunk_tokens[scan[tid] - 1] = t;
                }
                const unsigned int count = scan[EMB_BWD_THREADS - 1];
                __syncthreads();
                for (unsigned int j = 0; j < count; ++j) {
                    const size_t src = (size_t)chunk_tokens[j] * embed_dim;
#pragma unroll
                    for (int k = 0; k < EMB_BWD_COLS; ++k) {
                        const unsigned int e = col0 + k * EMB_BWD_THREADS + tid;
                        if (e < embed_dim) {
                            acc[k] += grad_out[src + e];
                        }
                    }
                }
                // chunk_tokens and scan are rewritten by the next chunk.
                __syncthreads();
            }
#pragma unroll
            for (int k = 0; k < EMB_BWD_COLS; ++k) {
                const unsigned int e = col0 + k * EMB_BWD_THREADS + tid;
                if (e < embed_dim) {
                    grad_rows[(size_t)row * embed_dim + e] = acc[k];
                }
            }
        }
    }
}
