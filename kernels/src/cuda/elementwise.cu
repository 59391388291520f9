// Element-wise kernels: fill, product, and inverted dropout with the counter-based RNG of
// `kernels::rng` (SplitMix64's finalizer), so masks match the CPU backend bit for bit.
//
// Every kernel has a bounds guard and a grid-stride loop; lengths are element counts.

// SplitMix64 finalizer over (seed, index), exactly as `kernels::rng::mix64` (wrapping u64).
__device__ __forceinline__ unsigned long long mix64(unsigned long long seed,
                                                    unsigned long long index) {
    const unsigned long long gamma = 0x9E3779B97F4A7C15ull;
    unsigned long long z = seed + index * gamma + gamma;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

// A uniform float in [0, 1) from the top 24 bits, exact like `kernels::rng::dropout_uniform`.
__device__ __forceinline__ float dropout_uniform(unsigned long long seed,
                                                 unsigned long long index) {
    return (float)(unsigned int)(mix64(seed, index) >> 40) * (1.0f / 16777216.0f);
}

// out[i] = value for i < n.
extern "C" __global__ void fill_fwd_f32(float* __restrict__ out, unsigned int n, float value) {
    const size_t stride = (size_t)blockDim.x * gridDim.x;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        out[i] = value;
    }
}

// out[i] = a[i] * b[i] for i < n.
extern "C" __global__ void mul_fwd_f32(const float* __restrict__ a, const float* __restrict__ b,
                                       float* __restrict__ out, unsigned int n) {
    const size_t stride = (size_t)blockDim.x * gridDim.x;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        out[i] = a[i] * b[i];
    }
}

// mask[i] = keep_scale when dropout_uniform(seed, i) >= drop_prob, else 0; out[i] = x[i] * mask[i].
// keep_scale = 1 / (1 - drop_prob) is computed once on the host, as the CPU backend does.
extern "C" __global__ void dropout_fwd_f32(const float* __restrict__ x, float* __restrict__ out,
                                           float* __restrict__ mask, unsigned int n,
                                           float drop_prob, float keep_scale,
                                           unsigned long long seed) {
    const size_t stride = (size_t)blockDim.x * gridDim.x;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        const float keep = dropout_uniform(seed, (unsigned long long)i) >= drop_prob
                               ? keep_scale : 0.0f;
        mask[i] = keep;
        out[i] = x[i] * keep;
    }
}

// dropout_fwd_f32 with seed = mix64(seed_base, step[0]): the step counter lives in device
// memory (see step_advance_fwd_f32), so a captured training step (a CUDA graph) replays with
// the mask of the step it is replaying, not the one it was captured at.
extern "C" __global__ void dropout_step_fwd_f32(const float* __restrict__ x,
                                                float* __restrict__ out,
                                                float* __restrict__ mask, unsigned int n,
                                                float drop_prob, float keep_scale,
                                                unsigned long long seed_base,
                                                const unsigned int* __restrict__ step) {
    const unsigned long long seed = mix64(seed_base, (unsigned long long)step[0]);
    const size_t stride = (size_t)blockDim.x * gridDim.x;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        const float keep = dropout_uniform(seed, (unsigned long long)i) >= drop_prob
                               ? keep_scale : 0.0f;
        mask[i] = keep;
        out[i] = x[i] * keep;
    }
}

// step[0] += 1, by one thread: the training step's device counter, advanced inside the step
// (and so inside its graph) before anything reads it.
extern "C" __global__ void step_advance_fwd_f32(unsigned int* __restrict__ step) {
    if (blockIdx.x == 0 && threadIdx.x == 0) {
        step[0] += 1u;
    }
}
