// Upsample, FIR-filter, downsample: declarations shared by the C++ binding and the CUDA kernel.
#pragma once
#include <ATen/ATen.h>

// y = downsample(correlate(pad(zero_stuff(x, up), pad), k), down) * gain, per channel, where the
// correlation kernel k is f flipped (a true convolution) unless flip_filter. f is float32 [fh, fw].
// Output size per axis: (in * up + pad0 + pad1 - taps) / down + 1. Keeps x's memory format.
at::Tensor upfirdn2d_cuda(const at::Tensor& x, const at::Tensor& f, int upx, int upy, int downx, int downy,
                          int padx0, int padx1, int pady0, int pady1, bool flip_filter, double gain);
