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

// grad_rows[slots[t]*E + e] += grad_out[t*E + e] (the launcher zeroes grad_rows first, so the
// op overwrites). Slots >= n_rows are skipped. Float atomics: the sum over the tokens that share
// a row is taken in a run-dependent order, so results agree with the CPU to rounding only
// (relative error about n * 2^-24 for a row hit n times).
extern "C" __global__ void embedding_bwd_f32(const float* __restrict__ grad_out,
                                             const unsigned int* __restrict__ slots,
                                             float* __restrict__ grad_rows,
                                             unsigned int n_tokens, unsigned int embed_dim,
                                             unsigned int n_rows) {
    const size_t total = (size_t)n_tokens * embed_dim;
    const size_t stride = (size_t)blockDim.x * gridDim.x;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += stride) {
        const size_t t = i / embed_dim;
        const size_t e = i - t * embed_dim;
        const unsigned int slot = slots[t];
        if (slot < n_rows) {
            atomicAdd(&grad_rows[(size_t)slot * embed_dim + e], grad_out[i]);
        }
    }
}
