// Python binding of the upfirdn2d CUDA kernel: argument checks, then upfirdn2d_cuda (upfirdn2d.cu).
#include <torch/extension.h>
#include "upfirdn2d.h"

static at::Tensor upfirdn2d(const at::Tensor& x, const at::Tensor& f, int64_t upx, int64_t upy,
                            int64_t downx, int64_t downy, int64_t padx0, int64_t padx1, int64_t pady0,
                            int64_t pady1, bool flip_filter, double gain) {
    TORCH_CHECK(x.is_cuda(), "upfirdn2d: x must be a CUDA tensor");
    TORCH_CHECK(x.dim() == 4, "upfirdn2d: x must be [N, C, H, W]");
    TORCH_CHECK(f.is_cuda() && f.device() == x.device(), "upfirdn2d: f must be on the device of x");
    TORCH_CHECK(f.scalar_type() == at::kFloat, "upfirdn2d: f must be float32");
    TORCH_CHECK(f.dim() == 2 && f.numel() > 0, "upfirdn2d: f must be a non-empty [fh, fw] tensor");
    TORCH_CHECK(upx >= 1 && upy >= 1 && downx >= 1 && downy >= 1, "upfirdn2d: up/down must be >= 1");
    const int64_t out_w = (x.size(3) * upx + padx0 + padx1 - f.size(1)) / downx + 1;
    const int64_t out_h = (x.size(2) * upy + pady0 + pady1 - f.size(0)) / downy + 1;
    TORCH_CHECK(x.size(3) * upx + padx0 + padx1 - f.size(1) >= 0 && out_w >= 1 &&
                x.size(2) * upy + pady0 + pady1 - f.size(0) >= 0 && out_h >= 1,
                "upfirdn2d: output would be empty");
    TORCH_CHECK(x.numel() < (int64_t(1) << 31) && x.size(0) * x.size(1) * out_h * out_w < (int64_t(1) << 31),
                "upfirdn2d: tensors with 2^31 or more elements are not supported");
    return upfirdn2d_cuda(x, f.contiguous(), (int)upx, (int)upy, (int)downx, (int)downy, (int)padx0,
                          (int)padx1, (int)pady0, (int)pady1, flip_filter, gain);
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
    m.def("upfirdn2d", &upfirdn2d, "Upsample, FIR-filter and downsample a batch of images (CUDA)");
}
