// Fused bias + activation + gain + clamp: shared declarations of the C++ binding and the CUDA kernels.
#pragma once
#include <ATen/ATen.h>

// Activation ids, matching ActivationSpec.cuda_idx in bias_act.py.
enum BiasActId {
    kLinear = 1, kRelu = 2, kLrelu = 3, kTanh = 4, kSigmoid = 5, kElu = 6, kSelu = 7, kSoftplus = 8, kSwish = 9
};

// grad = 0: y = clamp(act(x + b) * gain).
// grad = 1: x holds dL/dy; returns dL/ds with s = xref + b (swish) or from z = yref / gain (others),
//           zero where |yref| >= clamp (clamp >= 0).
// grad = 2: x holds the upstream gradient of the grad = 1 output; returns its derivative with respect
//           to s (swish, times dy) or to yref (other activations, times dy).
// Empty tensors mean "not given". All non-empty tensors share x's sizes and strides; b is 1-D along dim.
at::Tensor bias_act_cuda(const at::Tensor& x, const at::Tensor& b, const at::Tensor& xref,
                         const at::Tensor& yref, const at::Tensor& dy, int grad, int dim, int act,
                         double alpha, double gain, double clamp);
