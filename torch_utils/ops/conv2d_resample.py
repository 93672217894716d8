"""2-D convolution fused with FIR up/downsampling (official StyleGAN2-ADA API and numerics).

Meaning: ``upfirdn2d(x, f, up)`` (with gain up**2) -> pad -> conv2d(w) -> ``upfirdn2d(f, down)``.
Each case takes the cheapest exact route, in the same order of floating-point operations as the
official op so that official weights reproduce official outputs:
1x1 kernels resample on the smaller side, downsampling uses a strided conv after the filter, and
upsampling uses a strided transposed conv followed by the filter.
"""

from __future__ import annotations

import torch

from torch_utils.ops import conv2d_gradfix, upfirdn2d
from torch_utils.ops.upfirdn2d import Padding, _get_filter_size, _parse_padding


def _conv(
    x: torch.Tensor,
    w: torch.Tensor,
    stride: int = 1,
    padding=0,
    groups: int = 1,
    transpose: bool = False,
    flip_weight: bool = True,
) -> torch.Tensor:
    """conv2d (correlation) or its transpose; flip_weight=False makes it a true convolution."""
    if not flip_weight:
        w = w.flip([2, 3])
    op = conv2d_gradfix.conv_transpose2d if transpose else conv2d_gradfix.conv2d
    return op(x, w, stride=stride, padding=padding, groups=groups)


def _as_transpose_weight(w: torch.Tensor, groups: int) -> torch.Tensor:
    """[Cout, Cin/g, kh, kw] conv weight -> [Cin, Cout/g, kh, kw] layout that conv_transpose2d expects."""
    out_channels, in_per_group, kh, kw = w.shape
    if groups == 1:
        return w.transpose(0, 1)
    w = w.reshape(groups, out_channels // groups, in_per_group, kh, kw).transpose(1, 2)
    return w.reshape(groups * in_per_group, out_channels // groups, kh, kw)


def conv2d_resample(
    x: torch.Tensor,
    w: torch.Tensor,
    f: torch.Tensor | None = None,
    up: int = 1,
    down: int = 1,
    padding: Padding = 0,
    groups: int = 1,
    flip_weight: bool = True,
    flip_filter: bool = False,
) -> torch.Tensor:
    """Convolve x [N, Cin, H, W] with w [Cout, Cin/groups, kh, kw], resampling with FIR filter f.

    f: float32 filter from upfirdn2d.setup_filter (None = box of one tap). up/down: integer factors.
    padding: int, [x, y] or [x0, x1, y0, y1] applied at the convolution's resolution.
    flip_weight=True computes a correlation like torch conv2d. Returns [N, Cout, H', W'].
    """
    if not (isinstance(x, torch.Tensor) and x.ndim == 4):
        raise ValueError(f"conv2d_resample: x must be [N, C, H, W], got {getattr(x, 'shape', type(x))}")
    if not (isinstance(w, torch.Tensor) and w.ndim == 4 and w.dtype == x.dtype):
        raise ValueError(
            f"conv2d_resample: w must be a 4-D tensor of dtype {x.dtype}, got "
            f"{getattr(w, 'shape', type(w))} {getattr(w, 'dtype', '')}"
        )
    if f is not None and not (isinstance(f, torch.Tensor) and f.ndim in (1, 2) and f.dtype == torch.float32):
        raise ValueError(f"conv2d_resample: f must be None or a float32 1-D/2-D filter, got {getattr(f, 'shape', f)}")
    for name, value in (("up", up), ("down", down), ("groups", groups)):
        if not (isinstance(value, int) and value >= 1):
            raise ValueError(f"conv2d_resample: {name} must be an int >= 1, got {value!r}")
    out_channels, in_per_group, kh, kw = w.shape
    if x.shape[1] != in_per_group * groups:
        raise ValueError(f"conv2d_resample: x has {x.shape[1]} channels, weight expects {in_per_group * groups}")
    fw, fh = _get_filter_size(f)
    px0, px1, py0, py1 = _parse_padding(padding)

    # Padding that centres the filter on the resampled grid.
    if up > 1:
        px0 += (fw + up - 1) // 2
        px1 += (fw - up) // 2
        py0 += (fh + up - 1) // 2
        py1 += (fh - up) // 2
    if down > 1:
        px0 += (fw - down + 1) // 2
        px1 += (fw - down) // 2
        py0 += (fh - down + 1) // 2
        py1 += (fh - down) // 2
    pad = [px0, px1, py0, py1]

    if kw == 1 and kh == 1 and down > 1 and up == 1:
        # 1x1 conv commutes with the per-channel filter: downsample first, convolve the smaller image.
        x = upfirdn2d.upfirdn2d(x, f, down=down, padding=pad, flip_filter=flip_filter)
        return _conv(x, w, groups=groups, flip_weight=flip_weight)

    if kw == 1 and kh == 1 and up > 1 and down == 1:
        # Convolve first (fewer pixels), then upsample.
        x = _conv(x, w, groups=groups, flip_weight=flip_weight)
        return upfirdn2d.upfirdn2d(x, f, up=up, padding=pad, gain=up**2, flip_filter=flip_filter)

    if down > 1 and up == 1:
        # Filter at full resolution, then a strided convolution does the decimation.
        x = upfirdn2d.upfirdn2d(x, f, padding=pad, flip_filter=flip_filter)
        return _conv(x, w, stride=down, groups=groups, flip_weight=flip_weight)

    if up > 1:
        # A stride-`up` transposed conv is zero-stuffing + conv; the filter then smooths the result.
        # Whatever padding the transposed conv can absorb symmetrically (it crops) it does; the rest
        # goes to the filter pass.
        w = _as_transpose_weight(w, groups)
        px0 -= kw - 1
        px1 -= kw - up
        py0 -= kh - 1
        py1 -= kh - up
        pxt = max(min(-px0, -px1), 0)
        pyt = max(min(-py0, -py1), 0)
        x = _conv(x, w, stride=up, padding=[pyt, pxt], groups=groups, transpose=True, flip_weight=not flip_weight)
        x = upfirdn2d.upfirdn2d(
            x, f, padding=[px0 + pxt, px1 + pxt, py0 + pyt, py1 + pyt], gain=up**2, flip_filter=flip_filter
        )
        if down > 1:
            x = upfirdn2d.upfirdn2d(x, f, down=down, flip_filter=flip_filter)
        return x

    # No resampling.
    if px0 == px1 and py0 == py1 and px0 >= 0 and py0 >= 0:
        return _conv(x, w, padding=[py0, px0], groups=groups, flip_weight=flip_weight)
    x = upfirdn2d.upfirdn2d(x, None, padding=pad)
    return _conv(x, w, groups=groups, flip_weight=flip_weight)
