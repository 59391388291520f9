// The fully connected layer: x [batch, in], w [out, in], b [out], out [batch, out].

// out[n, o] = b[o] + sum_i x[n, i] * w[o, i] (overwrite). One warp per output, lanes striding
// over i, reduced by shuffles in a fixed order; launch with a multiple of 32 threads a block.
extern "C" __global__ void linear_fwd_f32(const float* __restrict__ x, const float* __restrict__ w,
                                          const float* __restrict__ b, float* __restrict__ out,
                                          unsigned int batch, unsigned int in_features,
                                          unsigned int out_features) {
    const unsigned int lane = threadIdx.x & 31u;
    const size_t warp = ((size_t)blockIdx.x * blockDim.x + threadIdx.x) >> 5;
    const size_t warps = ((size_t)gridDim.x * blockDim.x) >> 5;
    const size_t total = (size_t)batch * out_features;
    for (size_t idx = warp; idx < total; idx += warps) {  // uniform across the warp
        const size_t n = idx / out_features;
        const size_t o = idx - n * out_features;
        const float* xr = x + n * in_features;
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
            out[idx] = b[o] + s;
        }
    }
}

// The three gradients in one launch (all overwrite), one thread per output element:
// grad_x[n, i] = sum_o grad_out[n, o] * w[o, i]; grad_w[o, i] = sum_n grad_out[n, o] * x[n, i];
// grad_b[o] = sum_n grad_out[n, o]. Sums run in index order: deterministic. When mask is not
// null, grad_x[n, i] is multiplied by mask[n, i] (dropout's backward fused in).
extern "C" __global__ void linear_bwd_f32(const float* __restrict__ grad_out,
                                          const float* __restrict__ x,
                                          const float* __restrict__ w,
                                          float* __restrict__ grad_x, float* __restrict__ grad_w,
                                          float* __restrict__ grad_b, unsigned int batch,
                                          unsigned int in_features, unsigned int out_features,
                                          const float* __restrict__ mask) {
    const size_t n_gx = (size_t)batch * in_features;
    const size_t n_gw = (size_t)out_features * in_features;
    const size_t total = n_gx + n_gw + out_features;
    const size_t stride = (size_t)blockDim.x * gridDim.x;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += stride) {
        float s = 0.0f;
        if (i < n_gx) {
            const size_t n = i / in_features;
            const size_t k = i - n * in_features;
            for (unsigned int o = 0; o < out_features; ++o) {
                s = fmaf(grad_out[n * out_features + o], w[(size_t)o * in_features + k], s);
            }
            // With a dropout mask, the product mul_fwd_f32 would take next (same rounding).
            grad_x[i] = mask != nullptr ? s * mask[i] : s;
        } else if (i < n_gx + n_gw) {
            const size_t j = i - n_gx;
            const size_t o = j / in_features;
            const size_t k = j - o * in_features;
            for (unsigned int n = 0; n < batch; ++n) {
                s = fmaf(grad_out[(size_t)n * out_features + o], x[(size_t)n * in_features + k], s);
            }
            grad_w[j] = s;
        } else {
            const size_t o = i - n_gx - n_gw;
            for (unsigned int n = 0; n < batch; ++n) {
                s += grad_out[(size_t)n * out_features + o];
            }
            grad_b[o] = s;
        }
    }
}
