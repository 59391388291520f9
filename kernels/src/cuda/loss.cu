// Softmax cross-entropy with loss and accuracy accumulated on the device, and its gradient.

#define LOSS_THREADS 256

__device__ __forceinline__ float quiet_nan() { return __int_as_float(0x7fc00000); }

// The body of softmax_xent_fwd_f32, shared with the fused head below: called by every thread
// of one LOSS_THREADS block, with s_loss and s_hits the block's two shared arrays of
// LOSS_THREADS floats.
__device__ __forceinline__ void softmax_xent_block(
    const float* __restrict__ logits, const unsigned int* __restrict__ labels,
    float* __restrict__ grad, float* __restrict__ stats, unsigned int batch,
    unsigned int classes, int write_grad, float* s_loss, float* s_hits) {
    const float inv_batch = 1.0f / (float)batch;
    float loss = 0.0f;
    float hits = 0.0f;
    for (unsigned int n = threadIdx.x; n < batch; n += LOSS_THREADS) {
        const float* row = logits + (size_t)n * classes;
        const unsigned int label = labels[n];
        float m = row[0];
        unsigned int best = 0;
        for (unsigned int c = 1; c < classes; ++c) {
            if (row[c] > m) {
                m = row[c];
                best = c;
            }
        }
        float sum = 0.0f;
        for (unsigned int c = 0; c < classes; ++c) {
            sum += expf(row[c] - m);
        }
        const float lse = m + logf(sum);
        if (label < classes) {
            loss += lse - row[label];
            hits += best == label ? 1.0f : 0.0f;
        } else {
            loss += quiet_nan();
        }
        if (write_grad != 0) {
            float* grow = grad + (size_t)n * classes;
            for (unsigned int c = 0; c < classes; ++c) {
                const float p = expf(row[c] - m) / sum;
                grow[c] = (p - (c == label ? 1.0f : 0.0f)) * inv_batch;
            }
        }
    }
    s_loss[threadIdx.x] = loss;
    s_hits[threadIdx.x] = hits;
    __syncthreads();
    for (unsigned int half = LOSS_THREADS / 2; half > 0; half >>= 1) {
        if (threadIdx.x < half) {
            s_loss[threadIdx.x] += s_loss[threadIdx.x + half];
            s_hits[threadIdx.x] += s_hits[threadIdx.x + half];
        }
        __syncthreads();
    }
    if (threadIdx.x == 0) {
        stats[0] += s_loss[0];
        stats[1] += s_hits[0];
    }
}

// One block of LOSS_THREADS threads (other blocks return at once): each thread takes the
// samples n = tid, tid + LOSS_THREADS, ..., and a fixed-order tree sums the partials, so the
// result is deterministic. stats[0] += sum_n lse(logits[n]) - logits[n, label];
// stats[1] += #{n : first argmax of logits[n] = label}. When write_grad != 0,
// grad[n, c] = (softmax(logits[n])[c] - [c = label]) / batch (overwrite). A label >= classes
// adds NaN to the loss (labels are validated on upload).
extern "C" __global__ void __launch_bounds__(LOSS_THREADS)
softmax_xent_fwd_f32(const float* __restrict__ logits, const unsigned int* __restrict__ labels,
                     float* __restrict__ grad, float* __restrict__ stats, unsigned int batch,
                     unsigned int classes, int write_grad) {
    __shared__ float s_loss[LOSS_THREADS];
    __shared__ float s_hits[LOSS_THREADS];
    if (blockIdx.x != 0 || blockDim.x != LOSS_THREADS) {
        return;
    }
    softmax_xent_block(logits, labels, grad, stats, batch, classes, write_grad, s_loss, s_hits);
}

// ---------------------------------------------------------------- the fused head
// Dropout, the linear layer and softmax cross-entropy in one launch of one block (the head of
// the text CNN: 50 x 300 features and 2 classes a training batch), computing exactly what the
// three kernels compute one after the other: the mask as dropout_step_fwd_f32 (elementwise.cu),
// the logits as linear_fwd_f32 (linear.cu: one warp an output, lanes striding over the
// features, the same shuffle tree), then softmax_xent_block, the body of softmax_xent_fwd_f32.
// So the results are those of the three launches bit for bit.

// SplitMix64 finalizer and the dropout uniform, as elementwise.cu's mix64 / dropout_uniform.
__device__ __forceinline__ unsigned long long head_mix64(unsigned long long seed,
                                                         unsigned long long index) {
    const unsigned long long gamma = 0x9E3779B97F4A7C15ull;
    unsigned long long z = seed + index * gamma + gamma;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

// One block of LOSS_THREADS threads. With dropout (step != null): mask[i] = keep_scale when the
// uniform of (mix64(seed_base, step[0]), i) >= drop_prob else 0, dropped[i] = pooled[i] *
// mask[i] for i < batch * in_features, and the features are `dropped`; without, `pooled`.
// logits[n, o] = b[o] + features[n] . w[o]; then stats and grad as softmax_xent_fwd_f32.
extern "C" __global__ void __launch_bounds__(LOSS_THREADS, 1)
head_fwd_f32(const float* __restrict__ pooled, const float* __restrict__ w,
             const float* __restrict__ b, const unsigned int* __restrict__ labels,
             float* __restrict__ dropped, float* __restrict__ mask, float* __restrict__ logits,
             float* __restrict__ grad, float* __restrict__ stats, unsigned int batch,
             unsigned int in_features, unsigned int classes, float drop_prob,
             float keep_scale, unsigned long long seed_base,
             const unsigned int* __restrict__ step, int write_grad) {
    if (blockIdx.x != 0 || blockDim.x != LOSS_THREADS) {
        return;
    }
    const float* features = pooled;
    if (step != nullptr) {
        const unsigned long long seed = head_mix64(seed_base, (unsigned long long)step[0]);
        const size_t len = (size_t)batch * in_features;
        for (size_t i = threadIdx.x; i < len; i += LOSS_THREADS) {
            const float u = (float)(unsigned int)(head_mix64(seed, (unsigned long long)i) >> 40) *
                            (1.0f / 16777216.0f);
            const float keep = u >= drop_prob ? keep_scale : 0.0f;
            mask[i] = keep;
            dropped[i] = pooled[i] * keep;
        }
        features = dropped;
        __syncthreads();  // the block's writes of dropped are visible to the whole block
    }
    const unsigned int lane = threadIdx.x & 31u;
    const size_t total = (size_t)batch * classes;
    for (size_t idx = threadIdx.x >> 5; idx < total; idx += LOSS_THREADS / 32) {
        const size_t n = idx / classes;
        const size_t o = idx - n * classes;
        const float* xr = features + n * in_features;
        const float* wr = w + o * in_features;
        float s = 0.0f;
        for (unsigned int i = lane; i < in_features; i += 32u) {
            s = fmaf(xr[i], wr[i], s);
        }
#pragma unroll
        for (int offset = 16; offset > 0; offset >>= 1) {
            s += __shfl_down_sync(0xffffffffu, s, offset);
        }
        if (lane == 0) {
            logits[idx] = b[o] + s;
        }
    }
    __syncthreads();  // every logit is written
    __shared__ float h_loss[LOSS_THREADS];
    __shared__ float h_hits[LOSS_THREADS];
    softmax_xent_block(logits, labels, grad, stats, batch, classes, write_grad, h_loss, h_hits);
}
