// The optimizer: the global gradient norm as a device scalar, and RMSProp (plain or centered)
// with global-norm clipping read from that scalar, so a step needs no host round trip.

#define REDUCE_THREADS 256

// Sums a block's LOCAL values in a fixed-order tree; thread 0 gets the total.
__device__ __forceinline__ float block_sum(float local, float* shared) {
    shared[threadIdx.x] = local;
    __syncthreads();
    for (unsigned int half = REDUCE_THREADS / 2; half > 0; half >>= 1) {
        if (threadIdx.x < half) {
            shared[threadIdx.x] += shared[threadIdx.x + half];
        }
        __syncthreads();
    }
    return shared[0];
}

// partials[block] = sum of x[i]^2 over the block's grid-stride share. Launch with
// REDUCE_THREADS threads and a grid that depends only on n, so the result is deterministic.
extern "C" __global__ void __launch_bounds__(REDUCE_THREADS)
sum_squares_partial_fwd_f32(const float* __restrict__ x, unsigned int n,
                            float* __restrict__ partials) {
    __shared__ float shared[REDUCE_THREADS];
    if (blockDim.x != REDUCE_THREADS) {
        return;
    }
    float acc = 0.0f;
    const size_t stride = (size_t)blockDim.x * gridDim.x;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        acc = fmaf(x[i], x[i], acc);
    }
    const float total = block_sum(acc, shared);
    if (threadIdx.x == 0) {
        partials[blockIdx.x] = total;
    }
}

// acc[0] += sum of partials[0 .. n_partials]; one block of REDUCE_THREADS threads.
extern "C" __global__ void __launch_bounds__(REDUCE_THREADS)
sum_squares_final_fwd_f32(const float* __restrict__ partials, unsigned int n_partials,
                          float* __restrict__ acc) {
    __shared__ float shared[REDUCE_THREADS];
    if (blockIdx.x != 0 || blockDim.x != REDUCE_THREADS) {
        return;
    }
    float local = 0.0f;
    for (unsigned int i = threadIdx.x; i < n_partials; i += REDUCE_THREADS) {
        local += partials[i];
    }
    const float total = block_sum(local, shared);
    if (threadIdx.x == 0) {
        acc[0] += total;
    }
}

// Tensors one multi-tensor launch takes (the text CNN has 9 gradients).
#define MULTI_MAX 16

// Up to MULTI_MAX tensors, passed by value (the launcher fills it with device pointers).
struct TensorList {
    const float* ptr[MULTI_MAX];
    unsigned int len[MULTI_MAX];
    unsigned int count;
};

// partials[block] = sum of x_t[i]^2 over every tensor t of the list and the block's grid-stride
// share of it: one launch for the whole global norm instead of one a tensor. Launch with
// REDUCE_THREADS threads and a grid that depends only on the lengths (deterministic).
extern "C" __global__ void __launch_bounds__(REDUCE_THREADS)
sum_squares_multi_partial_fwd_f32(const TensorList list, float* __restrict__ partials) {
    __shared__ float shared[REDUCE_THREADS];
    if (blockDim.x != REDUCE_THREADS) {
        return;
    }
    float acc = 0.0f;
    const size_t stride = (size_t)blockDim.x * gridDim.x;
    const unsigned int count = list.count < MULTI_MAX ? list.count : MULTI_MAX;
    for (unsigned int t = 0; t < count; ++t) {
        const float* __restrict__ x = list.ptr[t];
        const size_t n = list.len[t];
        for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
            acc = fmaf(x[i], x[i], acc);
        }
    }
    const float total = block_sum(acc, shared);
    if (threadIdx.x == 0) {
        partials[blockIdx.x] = total;
    }
}

// acc[0] = sum of partials[0 .. n_partials] (overwrite, so no fill launch is needed first);
// one block of REDUCE_THREADS threads.
extern "C" __global__ void __launch_bounds__(REDUCE_THREADS)
sum_squares_multi_final_fwd_f32(const float* __restrict__ partials, unsigned int n_partials,
                                float* __restrict__ acc) {
    __shared__ float shared[REDUCE_THREADS];
    if (blockIdx.x != 0 || blockDim.x != REDUCE_THREADS) {
        return;
    }
    float local = 0.0f;
    for (unsigned int i = threadIdx.x; i < n_partials; i += REDUCE_THREADS) {
        local += partials[i];
    }
    const float total = block_sum(local, shared);
    if (threadIdx.x == 0) {
        acc[0] = total;
    }
}

// scale = max_norm / norm when max_norm > 0 and norm = sqrt(norm_sq[0]) exceeds it, else 1.
__device__ __forceinline__ float clip_scale(const float* __restrict__ norm_sq, float max_norm) {
    const float norm = sqrtf(norm_sq[0]);
    return (max_norm > 0.0f && norm > max_norm) ? max_norm / norm : 1.0f;
}

// One element of RMSProp: n = decay * n + (1 - decay) * g^2, then the plain or centered update.
__device__ __forceinline__ void rms_element(float* w, float* ms, float* mean, float g,
                                            float lr, float decay, float eps, int centered) {
    const float n = decay * *ms + (1.0f - decay) * g * g;
    *ms = n;
    float denom;
    if (centered != 0) {
        const float a = decay * *mean + (1.0f - decay) * g;
        *mean = a;
        denom = sqrtf(fmaxf(n - a * a, 0.0f)) + eps;
    } else {
        denom = sqrtf(n) + eps;
    }
    *w -= lr * g / denom;
}

// Dense RMSProp over n elements. `mean` may be null when centered == 0.
extern "C" __global__ void rmsprop_fwd_f32(float* __restrict__ w, const float* __restrict__ grad,
                                           float* __restrict__ ms, float* __restrict__ mean,
                                           const float* __restrict__ norm_sq, unsigned int n,
                                           float lr, float decay, float eps, float max_norm,
                                           int centered) {
    const float scale = clip_scale(norm_sq, max_norm);
    const size_t stride = (size_t)blockDim.x * gridDim.x;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        rms_element(&w[i], &ms[i], centered != 0 ? &mean[i] : nullptr, scale * grad[i], lr,
                    decay, eps, centered);
    }
}

// RMSProp on the rows a batch touched, with lazy decay; step and lr come from step_dev[0] and
// lr_dev[0] when those are not null. One block per slot s (grid-stride over
// slots), threads over the row's columns; rows must be distinct and rows[s] >= vocab is
// skipped. The missed steps k = step - last_step[r] - 1 decay the averages by decay^k first.
// Every thread reads last_step[r] before the barrier, and thread 0 writes it after.
extern "C" __global__ void rmsprop_rows_fwd_f32(
    float* __restrict__ table, const float* __restrict__ grad_rows,
    const unsigned int* __restrict__ rows, float* __restrict__ ms, float* __restrict__ mean,
    unsigned int* __restrict__ last_step, const float* __restrict__ norm_sq,
    unsigned int n_rows, unsigned int embed_dim, unsigned int vocab, unsigned int step_arg,
    float lr_arg, float decay, float eps, float max_norm, int centered,
    const unsigned int* __restrict__ step_dev, const float* __restrict__ lr_dev) {
    // A captured step reads its step and learning rate from device memory (non-null pointers).
    const unsigned int step = step_dev != nullptr ? step_dev[0] : step_arg;
    const float lr = lr_dev != nullptr ? lr_dev[0] : lr_arg;
    const float scale = clip_scale(norm_sq, max_norm);
    for (unsigned int s = blockIdx.x; s < n_rows; s += gridDim.x) {
        const unsigned int r = rows[s];  // uniform across the block
        if (r >= vocab) {
            continue;
        }
        const unsigned int last = last_step[r];
        const unsigned int missed = step > last + 1u ? step - last - 1u : 0u;
        const float lazy = missed == 0u ? 1.0f : powf(decay, (float)missed);
        __syncthreads();  // every thread has read last_step[r]
        for (unsigned int e = threadIdx.x; e < embed_dim; e += blockDim.x) {
            const size_t i = (size_t)r * embed_dim + e;
            ms[i] *= lazy;
            if (centered != 0) {
                mean[i] *= lazy;
            }
            rms_element(&table[i], &ms[i], centered != 0 ? &mean[i] : nullptr,
                        scale * grad_rows[(size_t)s * embed_dim + e], lr, decay, eps, centered);
        }
        if (threadIdx.x == 0) {
            last_step[r] = step;
        }
    }
}

// Up to MULTI_MAX dense parameters of one RMSProp step, passed by value; mean[t] is null
// unless centered.
struct RmsList {
    float* w[MULTI_MAX];
    const float* grad[MULTI_MAX];
    float* ms[MULTI_MAX];
    float* mean[MULTI_MAX];
    unsigned int len[MULTI_MAX];
    unsigned int count;
};

// rmsprop_fwd_f32 over every tensor of the list in one launch (the same update element by
// element, so the same result as one launch a tensor); lr comes from lr_dev[0] when not null.
extern "C" __global__ void rmsprop_multi_fwd_f32(const RmsList list,
                                                 const float* __restrict__ norm_sq,
                                                 float lr_arg, float decay, float eps,
                                                 float max_norm, int centered,
                                                 const float* __restrict__ lr_dev) {
    const float lr = lr_dev != nullptr ? lr_dev[0] : lr_arg;
    const float scale = clip_scale(norm_sq, max_norm);
    const size_t stride = (size_t)blockDim.x * gridDim.x;
    const unsigned int count = list.count < MULTI_MAX ? list.count : MULTI_MAX;
    for (unsigned int t = 0; t < count; ++t) {
        float* __restrict__ w = list.w[t];
        const float* __restrict__ grad = list.grad[t];
        float* __restrict__ ms = list.ms[t];
        float* __restrict__ mean = list.mean[t];
        const size_t n = list.len[t];
        for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
            rms_element(&w[i], &ms[i], centered != 0 ? &mean[i] : nullptr, scale * grad[i], lr,
                        decay, eps, centered);
        }
    }
}
