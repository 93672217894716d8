"""Upsample, FIR-filter, downsample: the resampling primitive of StyleGAN2 (official API and numerics).

Definition (the oracle): for each channel, insert ``up - 1`` zeros after every input sample, pad by
``padding = [x0, x1, y0, y1]`` (negative values crop), convolve with the 2-D FIR filter ``f`` (true
convolution; ``flip_filter=True`` makes it a correlation), multiply by ``gain``, keep every ``down``-th
sample. Output size per axis: ``(in * up + pad0 + pad1 - filter_taps) // down + 1``.

The reference path computes exactly that without materialising the zero-stuffed image: upsampling is
a depthwise transposed convolution, downsampling a strided convolution, and separable filters (1-D,
or 2-D of rank one, detected on CPU) run as two 1-D passes. The CUDA path uses our plugin
(``upfirdn2d.cu``) when ``impl='cuda'`` and ``x.is_cuda``; it falls back to the reference with one
warning when it cannot build.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from types import ModuleType

import numpy as np
import torch
import torch.nn.functional as F

from torch_utils import custom_ops

Padding = int | Sequence[int]
Scaling = int | Sequence[int]

# ----------------------------------------------------------------------------------------------------
# Argument parsing (official conventions).


def _parse_scaling(scaling: Scaling) -> tuple[int, int]:
    if isinstance(scaling, int):
        scaling = [scaling, scaling]
    if not (isinstance(scaling, (list, tuple)) and len(scaling) == 2 and all(isinstance(s, int) for s in scaling)):
        raise ValueError(f"up/down must be an int or a pair of ints, got {scaling!r}")
    sx, sy = scaling
    if sx < 1 or sy < 1:
        raise ValueError(f"up/down factors must be >= 1, got {scaling!r}")
    return sx, sy


def _parse_padding(padding: Padding) -> tuple[int, int, int, int]:
    if isinstance(padding, int):
        padding = [padding, padding]
    if not (isinstance(padding, (list, tuple)) and all(isinstance(p, int) for p in padding)):
        raise ValueError(f"padding must be an int or a list of ints, got {padding!r}")
    if len(padding) == 2:
        px, py = padding
        padding = [px, px, py, py]
    if len(padding) != 4:
        raise ValueError(f"padding must have 1, 2 or 4 entries [x0, x1, y0, y1], got {padding!r}")
    px0, px1, py0, py1 = padding
    return px0, px1, py0, py1


def _get_filter_size(f: torch.Tensor | None) -> tuple[int, int]:
    """(width, height) in taps; a 1-D filter is applied along both axes."""
    if f is None:
        return 1, 1
    if not (isinstance(f, torch.Tensor) and f.ndim in (1, 2)):
        raise ValueError(
            f"filter must be a 1-D or 2-D tensor, got {type(f).__name__} with shape {getattr(f, 'shape', None)}"
        )
    fw = f.shape[-1]
    fh = f.shape[0]
    if fw < 1 or fh < 1:
        raise ValueError(f"filter must have at least one tap, got shape {tuple(f.shape)}")
    return fw, fh


# ----------------------------------------------------------------------------------------------------


def setup_filter(
    f,
    device: torch.device = torch.device("cpu"),
    normalize: bool = True,
    flip_filter: bool = False,
    gain: float = 1,
    separable: bool | None = None,
) -> torch.Tensor:
    """Turn filter taps (None, scalar, list, array or tensor) into a float32 filter tensor.

    1-D taps become a separable 1-D filter when ``separable`` (default: at least 8 taps), otherwise
    the 2-D outer product. ``normalize`` makes the taps sum to 1; ``gain`` is the overall DC gain
    (spread as gain**0.5 per axis for separable filters). Returns [taps] or [height, width].
    """
    if f is None:
        f = 1
    f = torch.as_tensor(f, dtype=torch.float32)
    if f.ndim not in (0, 1, 2) or f.numel() == 0:
        raise ValueError(f"filter taps must be a non-empty scalar, 1-D or 2-D array, got shape {tuple(f.shape)}")
    if f.ndim == 0:
        f = f[np.newaxis]
    if separable is None:
        separable = f.ndim == 1 and f.numel() >= 8
    if f.ndim == 1 and not separable:
        f = torch.outer(f, f)
    if f.ndim != (1 if separable else 2):
        raise ValueError(f"separable={separable} needs 1-D taps, got shape {tuple(f.shape)}")
    if normalize:
        f = f / f.sum()
    if flip_filter:
        f = f.flip(list(range(f.ndim)))
    f = f * (gain ** (f.ndim / 2))
    return f.to(device=device)


# ----------------------------------------------------------------------------------------------------
# Reference implementation.


def _rank_one_factors(f: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(column, row) with outer(column, row) == f when the 2-D filter is separable, else None.

    Only checked on CPU: on an accelerator the test would force a host sync on every call.
    """
    if f.device.type != "cpu" or f.ndim != 2 or min(f.shape) == 1:
        return None
    with torch.no_grad():
        flat = int(f.abs().argmax())
        i, j = divmod(flat, f.shape[1])
        pivot = f[i, j]
        if float(pivot) == 0.0:
            return None
        col = f[:, j]
        row = f[i, :] / pivot
        tol = 1e-6 * float(pivot.abs())
        if float((torch.outer(col, row) - f).abs().max()) > tol:
            return None
    # Outside no_grad so a filter that requires grad keeps its graph.
    return f[:, j], f[i, :] / f[i, j]


def _pad_or_crop(x: torch.Tensor, pad: Sequence[int]) -> torch.Tensor:
    """F.pad(x, [x0, x1, y0, y1]) semantics on the zero-extended image: negative values crop, and a
    crop may run past the data on one side while the other side pads (F.pad itself refuses that)."""
    if not any(pad):
        return x
    if (
        all(p >= 0 for p in pad)
        or all(p <= 0 for p in pad)
        and x.shape[3] + pad[0] + pad[1] >= 0
        and x.shape[2] + pad[2] + pad[3] >= 0
    ):
        return F.pad(x, list(pad))
    for dim, (p0, p1) in ((3, pad[0:2]), (2, pad[2:4])):
        size = x.shape[dim]
        start, length = -p0, size + p0 + p1  # window of the zero-extended axis to keep
        lo, hi = min(max(start, 0), size), min(max(start + length, 0), size)
        x = x.narrow(dim, lo, hi - lo)
        before = min(max(-start, 0), length)
        pads = [0, 0, 0, 0]
        pads[(3 - dim) * 2 : (3 - dim) * 2 + 2] = [before, length - before - (hi - lo)]
        x = F.pad(x, pads)
    return x


def _upfirdn_pass(
    x: torch.Tensor, k: torch.Tensor, up: tuple[int, int], down: tuple[int, int], pad: tuple[int, int, int, int]
) -> torch.Tensor:
    """One depthwise pass with correlation kernel k [kh, kw] on x [N, C, H, W].

    Equals: zero-stuff by up, pad by pad=(x0, x1, y0, y1), correlate with k, take every down-th sample.
    """
    _, c, h, w = x.shape
    upx, upy = up
    downx, downy = down
    px0, px1, py0, py1 = pad
    kh, kw = k.shape
    out_w = (w * upx + px0 + px1 - kw) // downx + 1
    out_h = (h * upy + py0 + py1 - kh) // downy + 1
    if out_w < 1 or out_h < 1:
        raise ValueError(
            f"upfirdn2d output would be empty: input {h}x{w}, up={up}, down={down}, "
            f"padding={list(pad)}, filter {kh}x{kw}"
        )
    # Depthwise (groups=C) convolutions: PyTorch has fast CPU and GPU kernels for exactly this case.
    weight = k.to(x.dtype)[None, None].expand(c, 1, kh, kw)
    y = x
    if upx > 1 or upy > 1:
        # Transposed conv with the flipped kernel == zero-stuffing followed by correlation with k.
        # Its full output starts kw-1 (kh-1) samples before the zero-stuffed signal. Its own `padding`
        # (crop at both ends) and `output_padding` (< stride, extends the end) absorb the usual
        # shifts for free; anything else is an explicit pad/crop.
        full_out = (w * upx + px0 + px1 - kw + 1, h * upy + py0 + py1 - kh + 1)
        full = ((w - 1) * upx + kw, (h - 1) * upy + kh)
        crop0 = (kw - 1 - px0, kh - 1 - py0)
        extra = [full_out[i] - full[i] + 2 * crop0[i] for i in range(2)]
        if all(crop0[i] >= 0 and 0 <= extra[i] < (upx, upy)[i] for i in range(2)):
            y = F.conv_transpose2d(
                y,
                weight.flip([2, 3]),
                stride=(upy, upx),
                padding=(crop0[1], crop0[0]),
                output_padding=(extra[1], extra[0]),
                groups=c,
            )
        else:
            y = F.conv_transpose2d(y, weight.flip([2, 3]), stride=(upy, upx), groups=c)
            y = _pad_or_crop(
                y, [-crop0[0], full_out[0] - full[0] + crop0[0], -crop0[1], full_out[1] - full[1] + crop0[1]]
            )
        if downx > 1 or downy > 1:
            y = y[:, :, ::downy, ::downx]
    else:
        if px0 == px1 and py0 == py1 and px0 >= 0 and py0 >= 0:
            y = F.conv2d(y, weight, stride=(downy, downx), padding=(py0, px0), groups=c)
        else:
            y = F.conv2d(_pad_or_crop(y, [px0, px1, py0, py1]), weight, stride=(downy, downx), groups=c)
    return y


def _adjoint_padding(
    x_shape: Sequence[int],
    y_shape: Sequence[int],
    filter_size: tuple[int, int],
    up: tuple[int, int],
    down: tuple[int, int],
    pad: tuple[int, int, int, int],
) -> tuple[int, int, int, int]:
    """Padding of the adjoint pass (up and down swapped, filter flipped) that maps y's shape back onto x's."""
    (_, _, ih, iw), (_, _, oh, ow) = x_shape, y_shape
    (fw, fh), (upx, upy), (downx, downy), (px0, _, py0, _) = filter_size, up, down, pad
    return (
        fw - px0 - 1,
        iw * upx - ow * downx + px0 - upx + 1,
        fh - py0 - 1,
        ih * upy - oh * downy + py0 - upy + 1,
    )


class _FirPass(torch.autograd.Function):
    """One reference pass whose gradient is again one such pass (kernel flipped, up and down swapped).

    Why: autograd's own double backward of a grouped convolution loops over the groups, so R1 through the
    discriminator's FIR filters ran 512 one-channel convolutions per filter and pass (about 6% of a Dreg phase
    at 512 channels on CPU). As its own adjoint, the pass keeps gradients of any order depthwise.
    """

    @staticmethod
    def forward(ctx, x, k, up, down, pad):
        ctx.cfg = (k, up, down, pad, x.shape)
        return _upfirdn_pass(x, k, up, down, pad)

    @staticmethod
    def backward(ctx, dy):
        k, up, down, pad, x_shape = ctx.cfg
        grad_pad = _adjoint_padding(x_shape, dy.shape, (k.shape[1], k.shape[0]), up, down, pad)
        dx = _fir_pass(dy, k.flip([0, 1]), down, up, grad_pad)
        if dx.shape != x_shape:
            raise RuntimeError(f"upfirdn2d gradient shape {tuple(dx.shape)} != input shape {tuple(x_shape)}")
        return dx, None, None, None, None


def _fir_pass(
    x: torch.Tensor, k: torch.Tensor, up: tuple[int, int], down: tuple[int, int], pad: tuple[int, int, int, int]
) -> torch.Tensor:
    """_upfirdn_pass, differentiated by _FirPass where only x needs gradients (a filter that requires grad
    keeps autograd's own path)."""
    if torch.is_grad_enabled() and x.requires_grad and not k.requires_grad:
        return _FirPass.apply(x, k, up, down, pad)
    return _upfirdn_pass(x, k, up, down, pad)


def _upfirdn2d_ref(
    x: torch.Tensor,
    f: torch.Tensor | None,
    up: Scaling = 1,
    down: Scaling = 1,
    padding: Padding = 0,
    flip_filter: bool = False,
    gain: float = 1,
) -> torch.Tensor:
    if not (isinstance(x, torch.Tensor) and x.ndim == 4):
        raise ValueError(f"upfirdn2d expects x of shape [N, C, H, W], got {getattr(x, 'shape', type(x))}")
    if f is None:
        f = torch.ones([1, 1], dtype=torch.float32, device=x.device)
    if not (isinstance(f, torch.Tensor) and f.ndim in (1, 2)):
        raise ValueError(f"upfirdn2d filter must be a 1-D or 2-D tensor, got {getattr(f, 'shape', type(f))}")
    if f.dtype != torch.float32:
        raise ValueError(f"upfirdn2d filter must be float32 (see setup_filter), got {f.dtype}")
    upx, upy = _parse_scaling(up)
    downx, downy = _parse_scaling(down)
    px0, px1, py0, py1 = _parse_padding(padding)

    # Convolution with f == correlation with f flipped; the gain is folded into the taps as officially.
    f = f * (gain ** (f.ndim / 2))
    k = f if flip_filter else f.flip(list(range(f.ndim)))
    if k.ndim == 2:
        factors = _rank_one_factors(k)
        if factors is None:
            return _fir_pass(x, k, (upx, upy), (downx, downy), (px0, px1, py0, py1))
        kcol, krow = factors
    else:
        kcol = krow = k
    x = _fir_pass(x, krow[None, :], (upx, 1), (downx, 1), (px0, px1, 0, 0))
    return _fir_pass(x, kcol[:, None], (1, upy), (1, downy), (0, 0, py0, py1))


# ----------------------------------------------------------------------------------------------------
# CUDA plugin path.


def _plugin() -> ModuleType | None:
    """The compiled kernels, built on first use; None (after one warning) where they cannot be used.

    custom_ops.get_plugin caches the outcome per process, so this is a dictionary lookup after the first call.
    """
    return custom_ops.get_plugin(
        module_name="rlo_upfirdn2d_plugin",
        sources=["upfirdn2d.cpp", "upfirdn2d.cu"],
        headers=["upfirdn2d.h"],
        source_dir=os.path.dirname(__file__),
        extra_cuda_cflags=["--use_fast_math"],
    )


class _Upfirdn2dCuda(torch.autograd.Function):
    """One plugin call; its gradient is upfirdn2d with the roles of up/down swapped and the filter flipped."""

    @staticmethod
    def forward(ctx, x, f, up, down, padding, flip_filter, gain):
        upx, upy = up
        downx, downy = down
        px0, px1, py0, py1 = padding
        y = _plugin().upfirdn2d(x, f, upx, upy, downx, downy, px0, px1, py0, py1, flip_filter, gain)
        ctx.save_for_backward(f)
        ctx.cfg = (up, down, padding, flip_filter, gain, x.shape)
        return y

    @staticmethod
    def backward(ctx, dy):
        (f,) = ctx.saved_tensors
        up, down, padding, flip_filter, gain, x_shape = ctx.cfg
        grad_padding = _adjoint_padding(x_shape, dy.shape, _get_filter_size(f), up, down, padding)
        dx = None
        if ctx.needs_input_grad[0]:
            dx = _Upfirdn2dCuda.apply(dy, f, down, up, grad_padding, not flip_filter, gain)
            if dx.shape != x_shape:
                raise RuntimeError(f"upfirdn2d gradient shape {tuple(dx.shape)} != input shape {tuple(x_shape)}")
        return dx, None, None, None, None, None, None


def _upfirdn2d_cuda(x, f, up, down, padding, flip_filter, gain) -> torch.Tensor:
    if f is None:
        f = torch.ones([1, 1], dtype=torch.float32, device=x.device)
    upx, upy = _parse_scaling(up)
    downx, downy = _parse_scaling(down)
    px0, px1, py0, py1 = _parse_padding(padding)
    # Gain folded into the float32 taps exactly as in the reference, so both paths round alike.
    f = f.to(device=x.device) * (gain ** (f.ndim / 2))
    if f.ndim == 2:
        return _Upfirdn2dCuda.apply(x, f, (upx, upy), (downx, downy), (px0, px1, py0, py1), flip_filter, 1.0)
    # Separable: horizontal then vertical pass, as in the reference.
    x = _Upfirdn2dCuda.apply(x, f[None, :], (upx, 1), (downx, 1), (px0, px1, 0, 0), flip_filter, 1.0)
    return _Upfirdn2dCuda.apply(x, f[:, None], (1, upy), (1, downy), (0, 0, py0, py1), flip_filter, 1.0)


# ----------------------------------------------------------------------------------------------------
# Self-check of the plugin against the reference (custom_ops.use_plugin runs it once per device and dtype).

# (up, down, padding, filter, flip_filter, channels_last): the three resampling directions of the networks,
# crops (negative padding), anisotropic factors and both layouts. Filters are asymmetric so that a kernel
# that confuses flip_filter, or mirrors an axis, fails; the separable one takes the two-pass route.
SELF_CHECK_CASES: list[tuple] = [
    (2, 1, [2, 1, 2, 1], "2d", False, False),
    (1, 2, [1, 1, 1, 1], "2d", True, True),
    ([1, 2], [2, 1], [-1, 2, 1, 0], "2d", False, False),
    (2, 2, [2, 1, 0, 3], "1d", True, False),
]
SELF_CHECK_GAIN = 1.7


def _self_check_filter(kind: str) -> torch.Tensor:
    gen = torch.Generator().manual_seed(99)
    if kind == "1d":
        return torch.rand([5], generator=gen) + 0.2
    return torch.rand([3, 4], generator=gen) + 0.2


def self_check(device: torch.device, dtype: torch.dtype) -> None:
    """Plugin vs reference on SELF_CHECK_CASES: y, d/dx of sum(r * y^2), and d/dx of the squared norm of that
    gradient (the backward pass is again upfirdn2d, so this reaches the backward of the backward).
    Raises on disagreement."""
    pairs = []
    gen = torch.Generator().manual_seed(4321)
    x0 = torch.randn([2, 3, 6, 7], generator=gen, dtype=torch.float64).to(dtype)
    for up, down, padding, kind, flip, channels_last in SELF_CHECK_CASES:
        f = _self_check_filter(kind)
        r = None
        results = []
        for use_plugin in (True, False):
            cast = dtype if use_plugin else torch.float64
            x = x0.to(device=device, dtype=cast)
            if channels_last:
                x = x.to(memory_format=torch.channels_last)
            x.requires_grad_(True)
            fd = f.to(device)
            if use_plugin:
                y = _upfirdn2d_cuda(x, fd, up, down, padding, flip, SELF_CHECK_GAIN)
            else:
                y = _upfirdn2d_ref(x, fd, up, down, padding, flip, SELF_CHECK_GAIN)
            if r is None:
                r = torch.randn(y.shape, generator=gen, dtype=torch.float64)
            (gx,) = torch.autograd.grad((y * y * r.to(device=device, dtype=cast)).sum(), [x], create_graph=True)
            (hx,) = torch.autograd.grad((gx * gx).sum(), [x])
            results.append((y, gx, hx))
        name = (
            f"upfirdn2d(up={up}, down={down}, padding={padding}, filter {tuple(f.shape)}, flip_filter={flip}"
            f"{', channels_last' if channels_last else ''})"
        )
        for what, got, want in zip(("value", "grad x", "2nd-order grad x"), *results):
            pairs.append((f"{name} {what}", got, want))
    custom_ops.compare_with_reference(pairs, dtype)


# ----------------------------------------------------------------------------------------------------
# Public API.


def upfirdn2d(
    x: torch.Tensor,
    f: torch.Tensor | None,
    up: Scaling = 1,
    down: Scaling = 1,
    padding: Padding = 0,
    flip_filter: bool = False,
    gain: float = 1,
    impl: str = "cuda",
) -> torch.Tensor:
    """Pad, upsample, FIR-filter and downsample x [N, C, H, W] -> [N, C, H', W'].

    f: float32 [taps] (separable) or [fh, fw] filter from setup_filter, or None for identity.
    up/down: int or [x, y]. padding: int, [x, y] or [x0, x1, y0, y1] in upsampled pixels.
    impl: 'cuda' uses the plugin for CUDA tensors when it builds and passes its self-check
    (custom_ops.use_plugin; RLO_CUDA_OPS overrides), 'ref' forces the reference.
    """
    if impl not in ("cuda", "ref"):
        raise ValueError(f"impl must be 'cuda' or 'ref', got {impl!r}")
    if (
        impl == "cuda"
        and isinstance(x, torch.Tensor)
        and x.ndim == 4
        and custom_ops.use_plugin("upfirdn2d", x, _plugin, self_check)
    ):
        if f is not None and (not isinstance(f, torch.Tensor) or f.ndim not in (1, 2) or f.dtype != torch.float32):
            raise ValueError(f"upfirdn2d filter must be a float32 1-D or 2-D tensor, got {getattr(f, 'shape', f)}")
        return _upfirdn2d_cuda(x, f, up, down, padding, flip_filter, gain)
    return _upfirdn2d_ref(x, f, up=up, down=down, padding=padding, flip_filter=flip_filter, gain=gain)


def filter2d(
    x: torch.Tensor,
    f: torch.Tensor | None,
    padding: Padding = 0,
    flip_filter: bool = False,
    gain: float = 1,
    impl: str = "cuda",
) -> torch.Tensor:
    """FIR-filter x [N, C, H, W] keeping its size (plus padding), centred like the official op."""
    px0, px1, py0, py1 = _parse_padding(padding)
    fw, fh = _get_filter_size(f)
    p = [px0 + fw // 2, px1 + (fw - 1) // 2, py0 + fh // 2, py1 + (fh - 1) // 2]
    return upfirdn2d(x, f, padding=p, flip_filter=flip_filter, gain=gain, impl=impl)


def upsample2d(
    x: torch.Tensor,
    f: torch.Tensor | None,
    up: Scaling = 2,
    padding: Padding = 0,
    flip_filter: bool = False,
    gain: float = 1,
    impl: str = "cuda",
) -> torch.Tensor:
    """Upsample x [N, C, H, W] -> [N, C, H*up, W*up] with filter f; DC gain up**2 keeps brightness."""
    upx, upy = _parse_scaling(up)
    px0, px1, py0, py1 = _parse_padding(padding)
    fw, fh = _get_filter_size(f)
    p = [px0 + (fw + upx - 1) // 2, px1 + (fw - upx) // 2, py0 + (fh + upy - 1) // 2, py1 + (fh - upy) // 2]
    return upfirdn2d(x, f, up=up, padding=p, flip_filter=flip_filter, gain=gain * upx * upy, impl=impl)


def downsample2d(
    x: torch.Tensor,
    f: torch.Tensor | None,
    down: Scaling = 2,
    padding: Padding = 0,
    flip_filter: bool = False,
    gain: float = 1,
    impl: str = "cuda",
) -> torch.Tensor:
    """Low-pass filter and downsample x [N, C, H, W] -> [N, C, H/down, W/down]."""
    downx, downy = _parse_scaling(down)
    px0, px1, py0, py1 = _parse_padding(padding)
    fw, fh = _get_filter_size(f)
    p = [px0 + (fw - downx + 1) // 2, px1 + (fw - downx) // 2, py0 + (fh - downy + 1) // 2, py1 + (fh - downy) // 2]
    return upfirdn2d(x, f, down=down, padding=p, flip_filter=flip_filter, gain=gain, impl=impl)
