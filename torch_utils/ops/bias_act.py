"""Fused bias + activation + gain + clamp (official StyleGAN2-ADA API and numerics).

y = clamp(act(x + b) * gain, -clamp, clamp). The reference path is plain PyTorch (any-order autograd).
The CUDA path runs our plugin (``bias_act.cu``): one pass over memory forward, and backward passes that
recompute the activation derivative from the saved input or output (``ref``) instead of keeping
intermediates; first- and second-order gradients are supported.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from types import ModuleType

import numpy as np
import torch
import torch.nn.functional as F

from torch_utils import custom_ops


@dataclasses.dataclass(frozen=True)
class ActivationSpec:
    """One activation: reference formula, default alpha/gain, plugin id, and what its gradient needs.

    ref: 'x' when the derivative is computed from the input, 'y' from the output, '' for constant.
    has_2nd_grad: whether the second derivative is non-zero (else double backward skips it).
    """

    func: Callable[..., torch.Tensor]
    def_alpha: float
    def_gain: float
    cuda_idx: int
    ref: str
    has_2nd_grad: bool


activation_funcs: dict[str, ActivationSpec] = {
    "linear": ActivationSpec(lambda x, **_: x, 0.0, 1.0, 1, "", False),
    "relu": ActivationSpec(lambda x, **_: F.relu(x), 0.0, float(np.sqrt(2)), 2, "y", False),
    "lrelu": ActivationSpec(lambda x, alpha, **_: F.leaky_relu(x, alpha), 0.2, float(np.sqrt(2)), 3, "y", False),
    "tanh": ActivationSpec(lambda x, **_: torch.tanh(x), 0.0, 1.0, 4, "y", True),
    "sigmoid": ActivationSpec(lambda x, **_: torch.sigmoid(x), 0.0, 1.0, 5, "y", True),
    "elu": ActivationSpec(lambda x, **_: F.elu(x), 0.0, 1.0, 6, "y", True),
    "selu": ActivationSpec(lambda x, **_: F.selu(x), 0.0, 1.0, 7, "y", True),
    "softplus": ActivationSpec(lambda x, **_: F.softplus(x), 0.0, 1.0, 8, "y", True),
    "swish": ActivationSpec(lambda x, **_: torch.sigmoid(x) * x, 0.0, float(np.sqrt(2)), 9, "x", True),
}


def _resolve(act: str, alpha: float | None, gain: float | None, clamp: float | None):
    if act not in activation_funcs:
        raise ValueError(f"unknown activation {act!r}; choose one of {sorted(activation_funcs)}")
    spec = activation_funcs[act]
    if clamp is not None and not clamp >= 0:
        raise ValueError(f"clamp must be None or >= 0, got {clamp!r}")
    alpha = float(alpha if alpha is not None else spec.def_alpha)
    gain = float(gain if gain is not None else spec.def_gain)
    clamp = float(clamp if clamp is not None else -1)
    return spec, alpha, gain, clamp


def _check_bias(x: torch.Tensor, b: torch.Tensor | None, dim: int) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"bias_act expects a tensor x, got {type(x).__name__}")
    if b is None:
        return
    if not (isinstance(b, torch.Tensor) and b.ndim == 1 and 0 <= dim < x.ndim and b.shape[0] == x.shape[dim]):
        raise ValueError(
            f"bias of shape {getattr(b, 'shape', None)} does not match x.shape[{dim}] for x of shape {tuple(x.shape)}"
        )


def _bias_act_ref(
    x: torch.Tensor,
    b: torch.Tensor | None = None,
    dim: int = 1,
    act: str = "linear",
    alpha: float | None = None,
    gain: float | None = None,
    clamp: float | None = None,
) -> torch.Tensor:
    spec, alpha, gain, clamp = _resolve(act, alpha, gain, clamp)
    _check_bias(x, b, dim)
    if b is not None:
        x = x + b.reshape([-1 if i == dim else 1 for i in range(x.ndim)])
    x = spec.func(x, alpha=alpha)
    if gain != 1:
        x = x * gain
    if clamp >= 0:
        x = x.clamp(-clamp, clamp)
    return x


# ----------------------------------------------------------------------------------------------------
# CUDA plugin path.


def _plugin() -> ModuleType | None:
    """The compiled kernels, built on first use; None (after one warning) where they cannot be used.

    custom_ops.get_plugin caches the outcome per process, so this is a dictionary lookup after the first call.
    """
    return custom_ops.get_plugin(
        module_name="rlo_bias_act_plugin",
        sources=["bias_act.cpp", "bias_act.cu"],
        headers=["bias_act.h"],
        source_dir=os.path.dirname(__file__),
        extra_cuda_cflags=["--use_fast_math"],
    )


def _empty(x: torch.Tensor) -> torch.Tensor:
    return x.new_empty([0])


def _is_dense(x: torch.Tensor) -> bool:
    """No gaps and no overlaps in memory, in whatever dimension order (what the kernel can walk flat)."""
    expected = 1
    for stride, size in sorted((st, sz) for st, sz in zip(x.stride(), x.shape) if sz != 1):
        if stride != expected:
            return False
        expected *= size
    return True


def _dense(x: torch.Tensor) -> torch.Tensor:
    return x if _is_dense(x) else x.contiguous()


def _same_layout(t: torch.Tensor, *likes: torch.Tensor) -> torch.Tensor:
    """t (dense) with exactly the strides of the first non-empty `like`: the kernel walks all operands
    with one flat index."""
    t = _dense(t)
    for like in likes:
        if like.numel() != 0:
            return t if t.stride() == like.stride() else torch.empty_like(like).copy_(t)
    return t


_cuda_functions: dict[tuple, type] = {}


def _bias_act_cuda(dim: int, act: str, alpha: float, gain: float, clamp: float) -> type:
    """autograd.Function running the plugin for one configuration (cached: classes are costly to make).

    Forward saves only what the derivative needs: x for swish, y for output-referenced activations
    and for the clamp mask. First and second derivatives are exact (the derivative of act' goes to x
    for swish, to y for the others, which autograd carries back to x); third order is not supported,
    as in the official op.
    """
    key = (dim, act, alpha, gain, clamp)
    if key in _cuda_functions:
        return _cuda_functions[key]
    spec = activation_funcs[act]
    keep_x = "x" in spec.ref
    keep_y = "y" in spec.ref or clamp >= 0
    grad2_to_y = "y" in spec.ref and spec.has_2nd_grad
    grad2_to_x = keep_x and spec.has_2nd_grad

    def kernel(src, b, xref, yref, dy, grad):
        return _plugin().bias_act(src, b, xref, yref, dy, grad, dim, spec.cuda_idx, alpha, gain, clamp)

    def reduce_bias(t: torch.Tensor) -> torch.Tensor:
        return t.sum([i for i in range(t.ndim) if i != dim])

    class BiasActCuda(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, b):  # x: dense (see bias_act); b: [x.shape[dim]] or empty
            e = _empty(x)
            y = kernel(x, b, e, e, e, 0)
            ctx.save_for_backward(x if keep_x else e, b if keep_x else e, y if keep_y else e)
            return y

        @staticmethod
        def backward(ctx, dy):
            x, b, y = ctx.saved_tensors
            dy = _same_layout(dy, y, x)
            dx = BiasActCudaGrad.apply(dy, x, b, y)
            db = reduce_bias(dx) if ctx.needs_input_grad[1] else None
            return (dx if ctx.needs_input_grad[0] else None), db

    class BiasActCudaGrad(torch.autograd.Function):
        @staticmethod
        def forward(ctx, dy, x, b, y):
            dx = kernel(dy, b, x, y, _empty(dy), 1)
            ctx.save_for_backward(dy if spec.has_2nd_grad else _empty(dy), x, b, y)
            return dx

        @staticmethod
        def backward(ctx, d_dx):
            dy, x, b, y = ctx.saved_tensors
            d_dx = _same_layout(d_dx, y, x)
            d_dy = d_x = d_b = d_y = None
            if ctx.needs_input_grad[0]:
                d_dy = BiasActCudaGrad.apply(d_dx, x, b, y)
            if (grad2_to_x and (ctx.needs_input_grad[1] or ctx.needs_input_grad[2])) or (
                grad2_to_y and ctx.needs_input_grad[3]
            ):
                d2 = kernel(d_dx, b, x, y, dy, 2)
                if grad2_to_x:
                    d_x = d2
                    d_b = reduce_bias(d2) if ctx.needs_input_grad[2] else None
                else:
                    d_y = d2
            return d_dy, d_x, d_b, d_y

    _cuda_functions[key] = BiasActCuda
    return BiasActCuda


# ----------------------------------------------------------------------------------------------------
# Self-check of the plugin against the reference (custom_ops.use_plugin runs it once per device and dtype).

# Every activation with a non-default gain, plus the clamped lrelu the networks use; the clamped case runs on
# a channels_last input (the kernel finds the bias channel from the stride of dim).
SELF_CHECK_CASES: list[tuple[str, float | None, bool]] = [(act, None, False) for act in activation_funcs] + [
    ("lrelu", 0.6, True)
]
SELF_CHECK_GAIN = 1.3


def _self_check_inputs(act: str, clamp: float | None, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """Fixed x [2, 4, 3, 3] and b [4], rounded to dtype, whose pre-activations stay clear of the kinks.

    |x + b| >= 0.1 (relu/lrelu/elu/selu switch at 0) and |y| at least 10% away from the clamp level, so
    that rounding in the plugin's dtype cannot flip a branch against the float64 reference.
    """
    gen = torch.Generator().manual_seed(1234)
    x = torch.randn([2, 4, 3, 3], generator=gen, dtype=torch.float64) * 1.5
    b = torch.randn([4], generator=gen, dtype=torch.float64) * 0.5
    s = x + b.reshape(1, -1, 1, 1)
    s = torch.where(s.abs() < 0.1, torch.where(s >= 0, s + 0.1, s - 0.1), s)
    if clamp is not None:
        _, alpha, gain, _ = _resolve(act, None, SELF_CHECK_GAIN, clamp)
        for edge in (clamp / gain, -clamp / (gain * alpha)):  # where act(s) * gain reaches +-clamp
            near = (s - edge).abs() < 0.1 * abs(edge)
            s = torch.where(near, s + torch.where(s >= edge, 0.2, -0.2) * abs(edge), s)
    return (s - b.reshape(1, -1, 1, 1)).to(dtype), b.to(dtype)


def self_check(device: torch.device, dtype: torch.dtype) -> None:
    """Plugin vs reference on SELF_CHECK_CASES: y, d/d(x, b) of sum(r * y^2), and d/d(x, b) of the squared norm
    of that gradient (an R1-like second order, which reaches every backward branch). Raises on disagreement."""
    pairs = []
    gen = torch.Generator().manual_seed(4321)
    for act, clamp, channels_last in SELF_CHECK_CASES:
        spec, alpha, gain, clamp_f = _resolve(act, None, SELF_CHECK_GAIN, clamp)
        x0, b0 = _self_check_inputs(act, clamp, dtype)
        r = torch.randn(x0.shape, generator=gen, dtype=torch.float64)
        results = []
        for use_plugin in (True, False):
            cast = dtype if use_plugin else torch.float64
            x = x0.to(device=device, dtype=cast)
            if channels_last:
                x = x.to(memory_format=torch.channels_last)
            x.requires_grad_(True)
            b = b0.to(device=device, dtype=cast).requires_grad_(True)
            if use_plugin:
                y = _bias_act_cuda(1, act, alpha, gain, clamp_f).apply(_dense(x), b)
            else:
                y = _bias_act_ref(x, b, act=act, gain=SELF_CHECK_GAIN, clamp=clamp)
            gx, gb = torch.autograd.grad((y * y * r.to(device=device, dtype=cast)).sum(), [x, b], create_graph=True)
            hx, hb = torch.autograd.grad((gx * gx).sum() + (gb * gb).sum(), [x, b], allow_unused=True)
            results.append((y, gx, gb, hx, hb))
        name = f"bias_act(act={act}, gain={SELF_CHECK_GAIN}, clamp={clamp}{', channels_last' if channels_last else ''})"
        for what, got, want in zip(("value", "grad x", "grad b", "2nd-order grad x", "2nd-order grad b"), *results):
            pairs.append((f"{name} {what}", got, want))
    custom_ops.compare_with_reference(pairs, dtype)


# ----------------------------------------------------------------------------------------------------
# Public API.


def bias_act(
    x: torch.Tensor,
    b: torch.Tensor | None = None,
    dim: int = 1,
    act: str = "linear",
    alpha: float | None = None,
    gain: float | None = None,
    clamp: float | None = None,
    impl: str = "cuda",
) -> torch.Tensor:
    """Add bias b [x.shape[dim]] along dim, apply act, scale by gain, clamp to [-clamp, clamp].

    alpha/gain default to the activation's def_alpha/def_gain (activation_funcs); clamp=None disables
    clamping. impl: 'cuda' uses the plugin for CUDA tensors when it builds and passes its self-check
    (custom_ops.use_plugin; RLO_CUDA_OPS overrides), 'ref' forces the reference.
    Returns a tensor with the shape, dtype and memory layout of x.
    """
    if impl not in ("cuda", "ref"):
        raise ValueError(f"impl must be 'cuda' or 'ref', got {impl!r}")
    if impl == "cuda" and isinstance(x, torch.Tensor) and custom_ops.use_plugin("bias_act", x, _plugin, self_check):
        spec, alpha_f, gain_f, clamp_f = _resolve(act, alpha, gain, clamp)
        _check_bias(x, b, dim)
        if act == "linear" and gain_f == 1 and clamp_f < 0:  # nothing to fuse
            return x if b is None else x + b.reshape([-1 if i == dim else 1 for i in range(x.ndim)])
        b_t = _empty(x) if b is None else b.to(x.dtype).contiguous()
        # Densify outside the Function so that saved inputs stay connected for double backward.
        return _bias_act_cuda(dim, act, alpha_f, gain_f, clamp_f).apply(_dense(x), b_t)
    return _bias_act_ref(x, b, dim=dim, act=act, alpha=alpha, gain=gain, clamp=clamp)
