"""3x3 convolutions on CPU in float32 by Winograd's minimal filtering F(2x2, 3x3), where it beats oneDNN.

Forward and input gradient (stride 1, padding 1), and the weight gradient (stride 1: Winograd; other strides: one
matrix product over im2col columns).

Why: F(2x2, 3x3) (Lavin & Gray, 2016) turns a 3x3 convolution into 16 matrix products over the channels with 2.25x
fewer multiply-adds. One thread, batch 16, 512 channels, 32x32 (the `cifar` config's widest layers): oneDNN's direct
forward ~0.9-1.1 s, Winograd ~0.55 s; oneDNN's weight gradient ~3 s, Winograd ~0.6 s. The tile transforms are only
additions, subtractions and halvings, so the rounding is no worse than the direct kernel's (max error relative to
the largest output vs float64: ~5e-7 against oneDNN's ~3e-6; tests/test_ops_winograd.py).

The transforms move C x pixels x 4 floats through memory, the products cost C^2 x pixels: only wide layers gain, and
only when the 16 tile tensors are not page-faulted in on every call (host memory kept: torch_utils/host_memory.py;
with glibc's defaults the forward measured no faster than oneDNN's). `pays` says where each route is taken;
`benchmarks/bench_winograd.py` prints the measured grid behind it. The fast paths write into preallocated tiles
and are not differentiable: they are taken only where no autograd graph is being recorded (the forward inside
conv2d_gradfix's autograd.Function, backward passes without create_graph). Where a graph is needed, the weight
gradient is built from differentiable ops (differentiable again), and the forward stays with oneDNN.

Strided (the stride-2 convolution after each discriminator FIR filter, and the generator's transposed upsampling
convolution, whose weight gradient is a stride-2 correlation): the nine shifted, strided views of the padded input
side by side make a [pixels, 9 C] matrix, and one matrix product with the [pixels, K] output gradient gives the
weight gradient, with the same multiply-adds. At 512 channels it measured 1.5-2x faster than oneDNN's kernel on a
quiet machine but 1.0-1.3x slower at 17-33 px under load; at <= 9 px it won in every measurement (0.5-0.9x).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

enabled = True  # False: conv2d_gradfix always uses oneDNN (F.conv2d, conv2d_weight): A/B benchmarks, debugging
force = False  # True: every geometry this module computes takes its route, paying or not (tests of the routes)

# F(2, 3) in one dimension: y = AT [(G g) * (BT d)] for a 4-sample input tile d and a 3-tap correlation g, with
# BT = [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]] and AT = [[1, 1, 1, 0], [0, 1, -1, -1]]. Their
# entries are 0 and +-1, so the tile transforms are strided additions (_bt, _at_t below); G has halvings and is a
# matrix product over the (small) filter.
_G = [[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]]
_filter_transforms: dict[tuple[torch.dtype, torch.device], torch.Tensor] = {}


def _filter_transform(dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """G (x) G [16, 9]: the 2-D filter transform as one matrix over the row-major 3x3 taps."""
    key = (dtype, device)
    if key not in _filter_transforms:
        g = torch.tensor(_G, dtype=torch.float64)
        _filter_transforms[key] = torch.kron(g, g).to(dtype=dtype, device=device)
    return _filter_transforms[key]


def _eligible(
    x: torch.Tensor, other: torch.Tensor, w_shape: Sequence[int], dilation: Sequence[int], groups: int
) -> bool:
    """What every route here needs: enabled, float32 CPU 4-D tensors, an ungrouped undilated 3x3 kernel."""
    return (
        enabled
        and x.device.type == "cpu"
        and x.dtype == torch.float32
        and other.dtype == torch.float32
        and x.ndim == 4
        and other.ndim == 4
        and len(w_shape) == 4
        and tuple(w_shape[2:]) == (3, 3)
        and groups == 1
        and tuple(dilation) == (1, 1)
    )


def route(
    x: torch.Tensor,
    grad_out: torch.Tensor,
    w_shape: Sequence[int],
    stride: Sequence[int],
    padding: Sequence[int],
    dilation: Sequence[int],
    groups: int,
) -> str:
    """How the weight gradient of conv2d(x, w, stride, padding, dilation, groups) is computed here:
    'winograd', 'im2col', or '' (not here: torch.nn.grad.conv2d_weight). Only float32 CPU tensors qualify."""
    if not _eligible(x, grad_out, w_shape, dilation, groups):
        return ""
    kind = _geometry(x, grad_out, stride, padding)
    return kind if kind and (force or pays(kind, x, grad_out)) else ""


def pays(kind: str, x: torch.Tensor, grad_out: torch.Tensor) -> bool:
    """Whether route `kind` beats oneDNN's weight-gradient kernel for this layer. Measured one thread, batch 16,
    AVX2, host memory kept (benchmarks/bench_winograd.py --op=weight): Winograd 0.4-0.55x at 512 channels and
    0.6-0.65x at 256, at every size from 4 to 32 px; 0.83-0.87x at 128 channels up to 16 px; slower below 128.
    im2col only on the small (<= 9 px) inputs of the last downsampling layers, from 64 channels (0.5-0.8x)."""
    channels = min(x.shape[1], grad_out.shape[1])
    pixels = x.shape[2] * x.shape[3]
    if kind == "winograd":
        return channels >= 256 or (channels >= 128 and pixels <= 16 * 16)
    return kind == "im2col" and channels >= 64 and pixels <= 9 * 9


def _geometry(x: torch.Tensor, grad_out: torch.Tensor, stride: Sequence[int], padding: Sequence[int]) -> str:
    if stride[0] != stride[1] or padding[0] != padding[1]:
        return ""
    s, p = int(stride[0]), int(padding[0])
    out_size = tuple((size + 2 * p - 3) // s + 1 for size in x.shape[2:])
    if out_size != tuple(grad_out.shape[2:]) or min(out_size) < 1:
        return ""  # e.g. the adjoint of a transposed conv with output_padding: leave it to the direct kernel
    if s == 1 and p == 1 and x.shape[2] % 2 == 0 and x.shape[3] % 2 == 0:
        return "winograd"
    return "im2col" if s > 1 else ""


def weight_grad(
    x: torch.Tensor, grad_out: torch.Tensor, w_shape: Sequence[int], stride: Sequence[int], padding: Sequence[int]
) -> torch.Tensor:
    """torch.nn.grad.conv2d_weight(x, w_shape, grad_out, stride, padding) for 3x3 kernels, by the route its
    geometry allows (any float dtype; conv2d_gradfix sends only float32 CPU tensors here) -> [K, C, 3, 3]."""
    kind = _geometry(x, grad_out, stride, padding) if tuple(w_shape[2:]) == (3, 3) else ""
    if kind == "winograd":
        return weight_grad_3x3(x, grad_out)
    if kind == "im2col":
        return weight_grad_im2col(x, grad_out, int(stride[0]), int(padding[0]))
    raise ValueError(
        f"no CPU route for the weight gradient of x {tuple(x.shape)}, grad_out {tuple(grad_out.shape)}, "
        f"w {tuple(w_shape)}, stride {tuple(stride)}, padding {tuple(padding)}"
    )


def weight_grad_im2col(x: torch.Tensor, grad_out: torch.Tensor, stride: int, padding: int) -> torch.Tensor:
    """torch.nn.grad.conv2d_weight(x, [K, C, 3, 3], grad_out, stride, padding) -> [K, C, 3, 3]."""
    n, c = x.shape[:2]
    k, oh, ow = grad_out.shape[1:]
    xp = F.pad(x.permute(0, 2, 3, 1), (0, 0, padding, padding, padding, padding))  # [N, H', W', C]
    cols = torch.stack(
        [
            xp[:, a : a + stride * (oh - 1) + 1 : stride, b : b + stride * (ow - 1) + 1 : stride]
            for a in range(3)
            for b in range(3)
        ],
        dim=3,
    )  # [N, oh, ow, 9, C]
    dw = grad_out.permute(0, 2, 3, 1).reshape(-1, k).t() @ cols.reshape(-1, 9 * c)  # [K, 9 C]
    return dw.reshape(k, 3, 3, c).permute(0, 3, 1, 2)


def weight_grad_3x3(x: torch.Tensor, grad_out: torch.Tensor) -> torch.Tensor:
    """torch.nn.grad.conv2d_weight(x, [K, C, 3, 3], grad_out, padding=1) for x [N, C, H, W] (H, W even) and
    grad_out [N, K, H, W] -> [K, C, 3, 3]. Differentiable where a graph is being recorded."""
    n, c, h, width = x.shape
    k = grad_out.shape[1]
    if h % 2 or width % 2 or grad_out.shape[0] != n or tuple(grad_out.shape[2:]) != (h, width):
        raise ValueError(
            f"weight_grad_3x3: needs x [N, C, H, W] with even H, W and grad_out [N, K, H, W]; got "
            f"{tuple(x.shape)} and {tuple(grad_out.shape)}"
        )
    differentiable = _records_graph(x, grad_out)
    du = None  # [16, C, K], summed over chunks of images
    for i, j in _image_chunks(x, max(c, k)):
        v, dm = _input_tiles(x[i:j], differentiable), _output_grad_tiles(grad_out[i:j], differentiable)
        part = torch.bmm(v.transpose(1, 2), dm)
        if du is None:
            du = part
        else:
            du = du + part if differentiable else du.add_(part)
    return _filter_grad(du, c, k)


# ----------------------------------------------------------------------------------------------------
# Forward by Winograd, and the tile transforms: strided additions, written into preallocated tiles where no
# autograd graph is recorded (no temporaries), stacked where one is (differentiable again).


def _records_graph(*tensors: torch.Tensor | None) -> bool:
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def forward_route(
    x: torch.Tensor,
    w: torch.Tensor,
    b: torch.Tensor | None,
    stride: Sequence[int],
    padding: Sequence[int],
    dilation: Sequence[int],
    groups: int,
) -> bool:
    """Whether conv2d(x, w, b, stride, padding, dilation, groups) is computed here (conv3x3): float32 CPU, 3x3,
    stride 1, padding 1, even H and W, no autograd graph being recorded, and wide enough to pay."""
    return (
        _eligible(x, w, w.shape, dilation, groups)
        and (b is None or b.dtype == torch.float32)
        and w.shape[1] == x.shape[1]
        and tuple(stride) == (1, 1)
        and tuple(padding) == (1, 1)
        and x.shape[2] % 2 == 0
        and x.shape[3] % 2 == 0
        and min(x.shape[2:]) >= 2
        and not _records_graph(x, w, b)
        and (force or forward_pays(x, w))
    )


def forward_pays(x: torch.Tensor, w: torch.Tensor) -> bool:
    """Measured one thread, batch 16, AVX2, host memory kept (benchmarks/bench_winograd.py --op=forward):
    0.56-0.78x oneDNN's time at 256 and 512 channels from 8 to 32 px; 0.9x at 128 channels, 8-16 px (left to
    oneDNN, within the spread); slower at 4 px and below 128 channels."""
    channels = min(x.shape[1], w.shape[0])
    pixels = x.shape[2] * x.shape[3]
    return channels >= 256 and pixels >= 8 * 8


TILE_BYTES = 256 * 2**20  # tiles of at most this many bytes at once: larger batches go in chunks of images


def _image_chunks(x: torch.Tensor, channels: int) -> list[tuple[int, int]]:
    """[start, stop) image ranges whose 16 transformed tiles of `channels` channels fit in TILE_BYTES."""
    n, _, h, width = x.shape
    per_image = 4 * h * width * channels * x.element_size()  # 16 tiles per 4 pixels
    step = max(1, TILE_BYTES // max(1, per_image))
    return [(i, min(i + step, n)) for i in range(0, n, step)]


def conv3x3(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None = None) -> torch.Tensor:
    """F.conv2d(x, w, b, padding=1) for x [N, C, H, W] (H, W even), w [K, C, 3, 3] -> [N, K, H, W], no graph."""
    _, c, h, width = x.shape
    u = _filter_tiles(w)
    chunks = _image_chunks(x, max(c, w.shape[0]))
    if len(chunks) == 1:
        return _output_tiles(torch.bmm(_input_tiles(x), u), x.shape[0], h // 2, width // 2, b)
    y = x.new_empty([x.shape[0], w.shape[0], h, width])
    for i, j in chunks:
        y[i:j] = _output_tiles(torch.bmm(_input_tiles(x[i:j]), u), j - i, h // 2, width // 2, b)
    return y


# BT along one axis, row by row: row a = op(d[i], d[j]).
_BT_ROWS = ((torch.sub, 0, 2), (torch.add, 1, 2), (torch.sub, 2, 1), (torch.sub, 1, 3))


def _bt(d: Sequence[torch.Tensor], out: torch.Tensor | None = None) -> Sequence[torch.Tensor]:
    """BT along one axis of the four samples d[0..3] of every tile: four new tensors, or written into out[0..3]."""
    if out is None:
        return [op(d[i], d[j]) for op, i, j in _BT_ROWS]
    for slot, (op, i, j) in zip(out, _BT_ROWS):
        op(d[i], d[j], out=slot)
    return out


def _at_t(c0: torch.Tensor, c1: torch.Tensor, out: torch.Tensor | None = None) -> Sequence[torch.Tensor]:
    """AT^T along one axis of the two outputs c0, c1 of every tile: (c0, c0 + c1, c0 - c1, -c1)."""
    if out is None:
        return [c0, c0 + c1, c0 - c1, -c1]
    out[0].copy_(c0)
    torch.add(c0, c1, out=out[1])
    torch.sub(c0, c1, out=out[2])
    torch.neg(c1, out=out[3])
    return out


def _input_tiles(x: torch.Tensor, differentiable: bool = False) -> torch.Tensor:
    """x [N, C, H, W] -> BT d BT^T of every 4x4 window (stride 2) of the zero-padded image: [16, tiles, C]."""
    n, c, h, width = x.shape
    th, tw = h // 2, width // 2
    xp = F.pad(x.permute(0, 2, 3, 1), (0, 0, 1, 1, 1, 1))  # [N, H+2, W+2, C]
    rows = _bt([xp[:, i : i + 2 * th : 2] for i in range(4)])  # along the rows: 4 x [N, th, W+2, C]

    def columns(t: torch.Tensor) -> list[torch.Tensor]:
        return [t[:, :, j : j + 2 * tw : 2] for j in range(4)]

    if differentiable:
        v = torch.stack([tile for t in rows for tile in _bt(columns(t))])
    else:
        v = x.new_empty([4, 4, n, th, tw, c])
        for a, t in enumerate(rows):
            _bt(columns(t), out=v[a])
    return v.view(16, n * th * tw, c)


def _filter_tiles(w: torch.Tensor) -> torch.Tensor:
    """w [K, C, 3, 3] (correlation) -> G g G^T: [16, C, K]."""
    k, c = w.shape[:2]
    kg = _filter_transform(w.dtype, w.device)
    return (kg @ w.permute(2, 3, 1, 0).reshape(9, c * k)).view(16, c, k)


def _output_tiles(m: torch.Tensor, n: int, th: int, tw: int, b: torch.Tensor | None) -> torch.Tensor:
    """[16, tiles, K] -> AT m AT^T per tile (+ bias): the 2x2 outputs of every tile, [N, K, 2 th, 2 tw]."""
    k = m.shape[-1]
    m = m.view(4, 4, n, th, tw, k)
    s0, s1 = m[0] + m[1] + m[2], m[1] - m[2] - m[3]  # AT along the rows: [4, N, th, tw, K]
    y = m.new_empty([n, th, 2, tw, 2, k])
    for p, t in enumerate((s0, s1)):
        torch.add(t[0] + t[1], t[2], out=y[:, :, p, :, 0])
        torch.sub(t[1] - t[2], t[3], out=y[:, :, p, :, 1])
    y = y.view(n, 2 * th, 2 * tw, k)
    if b is not None:
        y += b
    return y.permute(0, 3, 1, 2).contiguous()


def _output_grad_tiles(g: torch.Tensor, differentiable: bool = False) -> torch.Tensor:
    """Adjoint of the output transform: grad_out [N, K, H, W] -> AT^T dY AT per 2x2 tile, [16, tiles, K]."""
    n, k, h, width = g.shape
    th, tw = h // 2, width // 2
    g = g.permute(0, 2, 3, 1).reshape(n, th, 2, tw, 2, k)
    rows = _at_t(g[:, :, 0], g[:, :, 1])  # along the rows: 4 x [N, th, tw, 2, K]
    if differentiable:
        out = torch.stack([tile for t in rows for tile in _at_t(t[:, :, :, 0], t[:, :, :, 1])])
    else:
        out = g.new_empty([4, 4, n, th, tw, k])
        for a, t in enumerate(rows):
            _at_t(t[:, :, :, 0], t[:, :, :, 1], out=out[a])
    return out.view(16, n * th * tw, k)


def _filter_grad(du: torch.Tensor, c: int, k: int) -> torch.Tensor:
    """[16, C, K] gradient w.r.t. the transformed filter -> back through G: [K, C, 3, 3]."""
    kg = _filter_transform(du.dtype, du.device)
    return (kg.t() @ du.reshape(16, c * k)).reshape(3, 3, c, k).permute(3, 2, 0, 1)
