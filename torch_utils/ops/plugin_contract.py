"""The CUDA plugins' calling contract written in PyTorch: stand-in "plugins" for any device.

`bias_act_plugin` and `upfirdn2d_plugin` have the entry points of the compiled modules (see bias_act.h and
upfirdn2d.h for the contract) and compute what the kernels compute, without autograd, like a kernel. With
`custom_ops.plugin_device_types` extended to "cpu", the plugin wrappers, their autograd and the self-check
run on CPU tensors: tests inject these (or deliberately broken variants), and benchmarks/bench_self_check.py
times the self-check's CPU-side cost with them.
"""

from __future__ import annotations

import types

import torch

from torch_utils.ops import bias_act as _bias_act
from torch_utils.ops import upfirdn2d as _upfirdn2d

SELU_ALPHA, SELU_SCALE = 1.6732632423543772, 1.0507009873554805


def _act_name(act_id: int) -> str:
    return next(name for name, spec in _bias_act.activation_funcs.items() if spec.cuda_idx == act_id)


def bias_act_kernel(x, b, xref, yref, dy, grad, dim, act, alpha, gain, clamp):
    """bias_act_cuda(x, b, xref, yref, dy, grad, dim, act, alpha, gain, clamp) of bias_act.h."""
    with torch.no_grad():
        shape = [-1 if i == dim else 1 for i in range(x.ndim)]
        bias = b.reshape(shape) if b.numel() else 0
        if grad == 0:
            y = _bias_act.activation_funcs[_act_name(act)].func(x + bias, alpha=alpha) * gain
            return y.clamp(-clamp, clamp) if clamp >= 0 else y
        s = xref + bias if xref.numel() else None
        z = yref / gain if yref.numel() else None
        if grad == 1:
            d = {
                1: lambda: torch.ones_like(x),
                2: lambda: (z > 0).to(x.dtype),
                3: lambda: torch.where(z > 0, torch.ones_like(z), torch.full_like(z, alpha)),
                4: lambda: 1 - z * z,
                5: lambda: z * (1 - z),
                6: lambda: torch.where(z > 0, 1.0, z + 1),
                7: lambda: torch.where(z > 0, SELU_SCALE, z + SELU_SCALE * SELU_ALPHA),
                8: lambda: 1 - torch.exp(-z),
                9: lambda: torch.sigmoid(s) + s * torch.sigmoid(s) * (1 - torch.sigmoid(s)),
            }[act]()
            out = x * gain * d
        else:
            g = torch.sigmoid(s) if s is not None else None
            d = {
                4: lambda: -2 * z,
                5: lambda: 1 - 2 * z,
                6: lambda: (z <= 0).to(x.dtype),
                7: lambda: (z <= 0).to(x.dtype),
                8: lambda: torch.exp(-z),
                9: lambda: gain * g * (1 - g) * (2 + s * (1 - 2 * g)),
            }.get(act, lambda: torch.zeros_like(x))()
            out = x * dy * d
        if clamp >= 0 and yref.numel():
            out = torch.where(yref.abs() < clamp, out, torch.zeros_like(out))
        return out.to(x.dtype)


def upfirdn2d_kernel(x, f, upx, upy, downx, downy, px0, px1, py0, py1, flip_filter, gain):
    """upfirdn2d_cuda(x, f, upx, upy, downx, downy, padx0, padx1, pady0, pady1, flip_filter, gain) of
    upfirdn2d.h (f float32 [fh, fw])."""
    if f.ndim != 2:
        raise ValueError(f"upfirdn2d plugin: f must be [fh, fw], got {tuple(f.shape)}")
    with torch.no_grad():
        return _upfirdn2d._upfirdn2d_ref(
            x, f, up=[upx, upy], down=[downx, downy], padding=[px0, px1, py0, py1], flip_filter=flip_filter, gain=gain
        )


bias_act_plugin = types.SimpleNamespace(bias_act=bias_act_kernel)
upfirdn2d_plugin = types.SimpleNamespace(upfirdn2d=upfirdn2d_kernel)
