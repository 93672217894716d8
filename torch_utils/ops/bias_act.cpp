// Python binding of the bias_act CUDA kernel: argument checks, then bias_act_cuda (bias_act.cu).
#include <torch/extension.h>
#include "bias_act.h"

static void check_like(const at::Tensor& t, const at::Tensor& x, const char* name) {
    if (t.numel() == 0) return;
    TORCH_CHECK(t.is_cuda(), "bias_act: ", name, " must be a CUDA tensor");
    TORCH_CHECK(t.device() == x.device(), "bias_act: ", name, " must be on the same device as x");
    TORCH_CHECK(t.scalar_type() == x.scalar_type(), "bias_act: ", name, " must have the dtype of x");
    TORCH_CHECK(t.sizes() == x.sizes() && t.strides() == x.strides(),
                "bias_act: ", name, " must have the sizes and strides of x");
}

static at::Tensor bias_act(const at::Tensor& x, const at::Tensor& b, const at::Tensor& xref,
                           const at::Tensor& yref, const at::Tensor& dy, int64_t grad, int64_t dim,
                           int64_t act, double alpha, double gain, double clamp) {
    TORCH_CHECK(x.is_cuda(), "bias_act: x must be a CUDA tensor");
    TORCH_CHECK(x.is_non_overlapping_and_dense(), "bias_act: x must be dense (contiguous in some layout)");
    TORCH_CHECK(x.numel() <= INT64_MAX / 2, "bias_act: x is too large");
    TORCH_CHECK(grad >= 0 && grad <= 2, "bias_act: grad must be 0, 1 or 2");
    TORCH_CHECK(act >= kLinear && act <= kSwish, "bias_act: unknown activation id ", act);
    TORCH_CHECK(dim >= 0 && dim < x.dim(), "bias_act: dim out of range");
    if (b.numel() != 0) {
        TORCH_CHECK(b.is_cuda() && b.device() == x.device(), "bias_act: b must be on the device of x");
        TORCH_CHECK(b.scalar_type() == x.scalar_type(), "bias_act: b must have the dtype of x");
        TORCH_CHECK(b.dim() == 1 && b.size(0) == x.size(dim), "bias_act: b must be 1-D with x.size(dim) entries");
        TORCH_CHECK(b.is_contiguous(), "bias_act: b must be contiguous");
    }
    check_like(xref, x, "xref");
    check_like(yref, x, "yref");
    check_like(dy, x, "dy");
    TORCH_CHECK(grad != 2 || dy.numel() != 0, "bias_act: grad=2 needs dy");
    TORCH_CHECK(grad == 0 || act == kLinear || xref.numel() != 0 || yref.numel() != 0,
                "bias_act: gradients need xref or yref");
    return bias_act_cuda(x, b, xref, yref, dy, (int)grad, (int)dim, (int)act, alpha, gain, clamp);
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
    m.def("bias_act", &bias_act, "Fused bias + activation + gain + clamp and its gradients (CUDA)");
}
