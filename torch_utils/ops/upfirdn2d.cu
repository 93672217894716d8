// Upsample, FIR-filter, downsample. One thread per output pixel: the taps that land on non-zero
// (non-stuffed) input samples are visited directly, so the zero-stuffed image is never built.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime.h>
#include "upfirdn2d.h"

namespace {

struct Params {
    int n, c, in_h, in_w, out_h, out_w;
    int upx, upy, downx, downy, padx0, pady0;
    int fh, fw;
    bool flip_filter;
    bool channels_last;      // iteration order follows the output layout for coalesced writes
    double gain;
    int64_t sx[4];           // input strides (n, c, h, w) in elements
    int64_t sy[4];           // output strides
};

__device__ __forceinline__ int ceil_div(int a, int b) {  // b > 0, any sign of a
    return a >= 0 ? (a + b - 1) / b : -((-a) / b);
}

template <typename scalar_t>
__global__ void upfirdn2d_kernel(Params p, scalar_t* __restrict__ y, const scalar_t* __restrict__ x,
                                 const float* __restrict__ f) {
    using T = at::opmath_type<scalar_t>;
    const int64_t total = int64_t(p.n) * p.c * p.out_h * p.out_w;
    const int64_t step = int64_t(blockDim.x) * gridDim.x;
    for (int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; idx < total; idx += step) {
        int64_t r = idx;
        int n, c, oy, ox;
        if (p.channels_last) {
            c = int(r % p.c); r /= p.c;
            ox = int(r % p.out_w); r /= p.out_w;
            oy = int(r % p.out_h); r /= p.out_h;
            n = int(r);
        } else {
            ox = int(r % p.out_w); r /= p.out_w;
            oy = int(r % p.out_h); r /= p.out_h;
            c = int(r % p.c); r /= p.c;
            n = int(r);
        }
        const scalar_t* xc = x + n * p.sx[0] + c * p.sx[1];
        // Tap t at output o reads the zero-stuffed sample o*down + t - pad0; it is a real input sample
        // i = (o*down + t - pad0) / up when that is divisible, non-negative and inside the image.
        const int ky0 = oy * p.downy - p.pady0;
        const int kx0 = ox * p.downx - p.padx0;
        const int iy_first = max(ceil_div(ky0, p.upy), 0);
        const int ix_first = max(ceil_div(kx0, p.upx), 0);
        T acc = T(0);
        for (int iy = iy_first, ty = iy_first * p.upy - ky0; ty < p.fh && iy < p.in_h; ++iy, ty += p.upy) {
            const int fy = p.flip_filter ? ty : p.fh - 1 - ty;
            const scalar_t* xrow = xc + iy * p.sx[2];
            for (int ix = ix_first, tx = ix_first * p.upx - kx0; tx < p.fw && ix < p.in_w; ++ix, tx += p.upx) {
                const int fx = p.flip_filter ? tx : p.fw - 1 - tx;
                acc += T(xrow[ix * p.sx[3]]) * T(__ldg(&f[fy * p.fw + fx]));
            }
        }
        y[n * p.sy[0] + c * p.sy[1] + oy * p.sy[2] + ox * p.sy[3]] = scalar_t(acc * T(p.gain));
    }
}

}  // namespace

at::Tensor upfirdn2d_cuda(const at::Tensor& x, const at::Tensor& f, int upx, int upy, int downx, int downy,
                          int padx0, int padx1, int pady0, int pady1, bool flip_filter, double gain) {
    const c10::cuda::CUDAGuard device_guard(x.device());
    Params p;
    p.n = int(x.size(0));
    p.c = int(x.size(1));
    p.in_h = int(x.size(2));
    p.in_w = int(x.size(3));
    p.fh = int(f.size(0));
    p.fw = int(f.size(1));
    p.out_w = (p.in_w * upx + padx0 + padx1 - p.fw) / downx + 1;
    p.out_h = (p.in_h * upy + pady0 + pady1 - p.fh) / downy + 1;
    p.upx = upx; p.upy = upy; p.downx = downx; p.downy = downy;
    p.padx0 = padx0; p.pady0 = pady0;
    p.flip_filter = flip_filter;
    p.gain = gain;
    const auto format = x.suggest_memory_format();
    p.channels_last = format == at::MemoryFormat::ChannelsLast;
    at::Tensor y = at::empty({p.n, p.c, p.out_h, p.out_w}, x.options().memory_format(format));
    for (int d = 0; d < 4; ++d) {
        p.sx[d] = x.stride(d);
        p.sy[d] = y.stride(d);
    }
    if (y.numel() == 0) return y;
    const int threads = 256;
    int sm_count = 0;
    C10_CUDA_CHECK(cudaDeviceGetAttribute(&sm_count, cudaDevAttrMultiProcessorCount, x.get_device()));
    const int64_t max_blocks = int64_t(sm_count > 0 ? sm_count : 1) * 32;
    const int blocks = int(std::min<int64_t>((y.numel() + threads - 1) / threads, max_blocks));
    cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "upfirdn2d_cuda", [&] {
        upfirdn2d_kernel<scalar_t><<<blocks, threads, 0, stream>>>(p, y.data_ptr<scalar_t>(),
                                                                   x.data_ptr<scalar_t>(), f.data_ptr<float>());
    });
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    return y;
}
