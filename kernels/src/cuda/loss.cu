// Softmax cross-entropy with loss and accuracy accumulated on the device, and its gradient.

#define LOSS_THREADS 256

__device__ __forceinline__ float quiet_nan() { return __int_as_float(0x7fc00000); }

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
