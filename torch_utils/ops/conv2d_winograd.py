"""3x3 convolutions on CPU in float32 by Winograd's minimal filtering and by matrix products, where they beat oneDNN.

Forward and input gradient (stride 1, padding 1), and the weight gradient (stride 1: Winograd; other strides: one
matrix product over im2col columns); stride-2 transposed convolutions (one matrix product, then col2im). Outputs
are channels_last: the next layer's tiles and products read that layout without a transposing copy
(conv2d_gradfix hands oneDNN contiguous tensors where it measured faster with them).

Why: F(m x m, 3 x 3) (Lavin & Gray, 2016) turns a 3x3 convolution into (m + 2)^2 matrix products over the channels:
F(4x4, 3x3) does 2.25 multiply-adds per output and channel pair where the direct kernel does 9, F(2x2, 3x3) does 4.
F(4x4, 3x3) is taken where H and W divide by 4 (from 8 px), F(2x2, 3x3) on other even sizes; `max_tile = 2` keeps
F(2x2, 3x3) everywhere (its transforms are +-1, F(4x4, 3x3)'s scale by up to 8 and 1/24: about 20x the rounding).

Rounding (float32), a bound that holds on any CPU and BLAS. Every value computed here is a sum of monomials
(a transform constant times an input and a filter entry, or an input and an output-gradient entry), and each float
operation on the way multiplies what it returns by (1 + delta), |delta| <= u = 2^-24. A monomial that passes through
at most n roundings is therefore computed as monomial * (1 + theta), |theta| <= gamma_n = n u / (1 - n u), whatever
the order of the sums (Higham, Accuracy and Stability of Numerical Algorithms, 2nd ed., Lemma 3.1 and 3.3), so

    |computed - exact| <= gamma_n * (the same algorithm evaluated on |inputs| with |constants|)

elementwise. `rounding_bound` evaluates the right side in float64 with `absolute(tiling)`; `roundings` counts n
along the longest path: the filter transform (its constants rounded to float32 once, then a 9-term product and
sum), the input transform, one product, the sum over C (C - 1), the output transform and the bias; for the weight
gradient the input and output-gradient tiles, one product, the sum over every tile of every image, and the
(m + 2)^2-term product with G's constants. A tile transform runs by either of two routes (below), and
`transform_roundings` takes the larger count: its program along rows then columns (`program_roundings`, twice), or
one product with its Kronecker matrix (a sum of up to 25 nonzero terms, `matrix_roundings`). Multiplying by a power
of two is exact. tests/test_ops_winograd.py holds both routes to it and checks that the same route in bfloat16
breaks it (5-11x), so the test can fail. Worst-case bounds are loose: on the tests' inputs the float32 error
measured 0.04-0.4% of the bound with AVX-512 kernels and the matrix route (0.02-0.4% with AVX2 and AVX-512 kernels
alike and the program route; max error relative to the largest output: F(2x2, 3x3) ~5e-7, F(4x4, 3x3) ~1e-5;
oneDNN's direct kernel 2.4e-6 under AVX2 and 2.5e-7 under AVX-512, which is why a test calibrated against it passed
on one CPU kind only).

`RLO_CPU_WINOGRAD=off` in the environment turns every route here off (oneDNN everywhere), for an A/B check or a CPU
whose kernels the cost rules were not measured on.

The transforms move C x pixels x (m + 2)^2 / m^2 floats through memory, the products cost C^2 x pixels: only wide
layers gain, and only when the tile tensors are not page-faulted in on every call (host memory kept:
torch_utils/host_memory.py; with glibc's defaults the forward measured no faster than oneDNN's). `pays`,
`forward_pays` and `transpose_pays` say where each route is taken; `benchmarks/bench_winograd.py` prints the
measured grid behind it. The fast paths gather each tile's samples with
strided copies into one [(m + 2)^2, tiles x C] matrix and transform every tile with one product by BT (x) BT (and
the outputs by AT (x) AT): memory-bound work done by BLAS in one pass, about 1.4x (input) and 2.7x (output) faster
than the programs of strided additions they replaced. They are not differentiable: they are taken only where no
autograd graph is being recorded (the forward inside conv2d_gradfix's autograd.Function, backward passes without
create_graph). Where a graph is needed, the weight gradient runs the programs on stacked views (differentiable
again), and the forward stays with oneDNN.

Strided (the stride-2 convolution after each discriminator FIR filter, and the generator's transposed upsampling
convolution, whose weight gradient is a stride-2 correlation): the nine shifted, strided views of the padded input
side by side make a [pixels, 9 C] matrix, and one matrix product with the [pixels, K] output gradient gives the
weight gradient, with the same multiply-adds. At 512 channels it measured 1.5-2x faster than oneDNN's kernel on a
quiet machine but 1.0-1.3x slower at 17-33 px under load; at <= 9 px it won in every measurement (0.5-0.9x).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

SWITCH_ENV = "RLO_CPU_WINOGRAD"  # "off": every CPU convolution stays with oneDNN (A/B checks, debugging, a new CPU)
enabled = os.environ.get(SWITCH_ENV, "on") != "off"  # False: conv2d_gradfix always uses oneDNN
force = False  # True: every geometry this module computes takes its route, paying or not (tests of the routes)

Step = tuple[str, str, "str | None", float]  # (dst, a, b, alpha): dst = a + alpha * b, or alpha * a if b is None


@dataclass(frozen=True)
class Tiling:
    """F(m x m, 3 x 3): each (m + 2)^2 input tile gives m^2 outputs from (m + 2)^2 products per channel pair,
    y = AT [(G g GT) * (BT d B)] A. The input and output transforms are written once, as short programs of scaled
    additions over the m + 2 samples along one axis (common terms shared): run as they are where a graph is
    recorded, as their Kronecker matrices (`program_matrix`) where none is. G is a matrix product over the filter.
    Checked against the 1-D identity in tests/test_ops_winograd.py."""

    name: str
    m: int  # outputs per tile side
    g: tuple[tuple[float, ...], ...]  # [m + 2, 3]: the filter transform
    bt: tuple[Step, ...]  # BT: inputs i0..i{m+1} -> o0..o{m+1}
    at: tuple[Step, ...]  # AT: i0..i{m+1} -> o0..o{m-1}
    a: tuple[Step, ...]  # A = AT^T, the adjoint of AT (weight gradient): i0..i{m-1} -> o0..o{m+1}

    @property
    def size(self) -> int:
        return self.m + 2


# Lavin & Gray's F(2, 3): BT = [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], AT = [[1, 1, 1, 0],
# [0, 1, -1, -1]]. Entries 0 and +-1: no rounding in the tile transforms beyond the additions.
F2 = Tiling(
    name="F(2x2, 3x3)",
    m=2,
    g=((1, 0, 0), (0.5, 0.5, 0.5), (0.5, -0.5, 0.5), (0, 0, 1)),
    bt=(("o0", "i0", "i2", -1), ("o1", "i1", "i2", 1), ("o2", "i2", "i1", -1), ("o3", "i1", "i3", -1)),
    at=(("o0", "i0", "i1", 1), ("o0", "o0", "i2", 1), ("o1", "i1", "i2", -1), ("o1", "o1", "i3", -1)),
    a=(("o0", "i0", None, 1), ("o1", "i0", "i1", 1), ("o2", "i0", "i1", -1), ("o3", "i1", None, -1)),
)

# F(4, 3) on the points 0, +-1, +-2 and infinity: BT = [[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0],
# [0, -2, -1, 2, 1, 0], [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]], AT = [[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0],
# [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]]. 2.25 products per output instead of F(2, 3)'s 4 (direct: 9).
F4 = Tiling(
    name="F(4x4, 3x3)",
    m=4,
    g=(
        (1 / 4, 0, 0),
        (-1 / 6, -1 / 6, -1 / 6),
        (-1 / 6, 1 / 6, -1 / 6),
        (1 / 24, 1 / 12, 1 / 6),
        (1 / 24, -1 / 12, 1 / 6),
        (0, 0, 1),
    ),
    bt=(
        ("o0", "i4", "i0", 4),
        ("o0", "o0", "i2", -5),
        ("p", "i4", "i2", -4),
        ("q", "i3", "i1", -4),
        ("o1", "p", "q", 1),
        ("o2", "p", "q", -1),
        ("p", "i4", "i2", -1),
        ("q", "i3", "i1", -1),
        ("o3", "p", "q", 2),
        ("o4", "p", "q", -2),
        ("o5", "i5", "i1", 4),
        ("o5", "o5", "i3", -5),
    ),
    at=(
        ("p", "i1", "i2", 1),
        ("q", "i1", "i2", -1),
        ("r", "i3", "i4", 1),
        ("s", "i3", "i4", -1),
        ("o0", "i0", "p", 1),
        ("o0", "o0", "r", 1),
        ("o1", "q", "s", 2),
        ("o2", "p", "r", 4),
        ("o3", "q", "s", 8),
        ("o3", "o3", "i5", 1),
    ),
    a=(
        ("o0", "i0", None, 1),
        ("p", "i0", "i2", 1),
        ("q", "i1", "i3", 1),
        ("o1", "p", "q", 1),
        ("o2", "p", "q", -1),
        ("p", "i0", "i2", 4),
        ("q", "i1", "i3", 4),
        ("o3", "p", "q", 2),
        ("o4", "p", "q", -2),
        ("o5", "i3", None, 1),
    ),
)

max_tile = 4  # outputs per tile side where H and W allow it; 2: F(2x2, 3x3) everywhere (less rounding, more products)


def tiling_for(h: int, w: int) -> Tiling:
    """F(4x4, 3x3) where H and W are multiples of 4 from 8 px (max_tile permitting), else F(2x2, 3x3) (H, W even).
    At 4 px F(4x4, 3x3) is one tile per image and measured slower than F(2x2, 3x3) (bench_winograd.py)."""
    return F4 if max_tile >= 4 and h % 4 == 0 and w % 4 == 0 and min(h, w) >= 8 else F2


def run_program(program: Sequence[Step], inputs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """One tile transform along one axis, as new tensors (differentiable)."""
    slots = {f"i{n}": t for n, t in enumerate(inputs)}
    for dst, a, b, alpha in program:
        if b is None:
            slots[dst] = slots[a] if alpha == 1 else slots[a] * alpha
        else:
            slots[dst] = torch.add(slots[a], slots[b], alpha=alpha)
    return [slots[name] for name in _outputs(program)]


def _outputs(program: Sequence[Step]) -> list[str]:
    """The output slots a program writes, in order: o0, o1, ..."""
    return sorted({dst for dst, *_ in program if dst.startswith("o")}, key=lambda name: int(name[1:]))


_filter_transforms: dict[tuple[str, torch.dtype, torch.device], torch.Tensor] = {}


def _filter_transform(tiling: Tiling, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """G (x) G [(m + 2)^2, 9]: the 2-D filter transform as one matrix over the row-major 3x3 taps."""
    key = (tiling.name, dtype, device)
    if key not in _filter_transforms:
        g = torch.tensor(tiling.g, dtype=torch.float64)
        _filter_transforms[key] = torch.kron(g, g).to(dtype=dtype, device=device)
    return _filter_transforms[key]


def program_matrix(program: Sequence[Step], inputs: int) -> torch.Tensor:
    """The matrix T of a 1-D tile program (float64): column j is the program applied to the j-th unit vector."""
    return torch.stack(run_program(program, list(torch.eye(inputs, dtype=torch.float64))))


_tile_transforms: dict[tuple[str, str, torch.dtype, torch.device], torch.Tensor] = {}


def _tile_transform(tiling: Tiling, which: str, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """T (x) T for T = BT [(m + 2)^2, (m + 2)^2], AT [m^2, (m + 2)^2] or A [(m + 2)^2, m^2] (`which`): a 2-D tile
    transform as one matrix over the row-major samples of a tile, from the tiling's programs."""
    key = (tiling.name, which, dtype, device)
    if key not in _tile_transforms:
        program, inputs = {"bt": (tiling.bt, tiling.size), "at": (tiling.at, tiling.size), "a": (tiling.a, tiling.m)}[
            which
        ]
        t = program_matrix(program, inputs)
        _tile_transforms[key] = torch.kron(t, t).to(dtype=dtype, device=device)
    return _tile_transforms[key]


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
    """Whether route `kind` beats oneDNN's weight-gradient kernel for this layer on AVX2 and on AVX-512 CPUs
    alike (benchmarks/results/winograd_avx2.json, winograd_avx512.json; one thread, batch 16, host memory kept).
    Winograd from 256 channels at every size from 4 to 32 px (0.44-0.67x oneDNN's time with AVX2 kernels,
    0.52-0.79x with AVX-512); at 128 channels it gains with AVX2 (0.85-0.94x from 8 px) but loses with AVX-512
    (1.10-1.15x), so it is left to oneDNN. im2col (stride 2) from 64 channels: on an NCHW input only up to 9 px
    (0.54-0.87x on both); on a channels_last input, the layout the networks' FIR filters hand it and which oneDNN
    needs a dense copy of, up to 17 px and from 256 channels up to 33 px (0.50-0.85x on both; left to oneDNN: 33 px
    below 256 channels, 0.84-0.98x) (benchmarks/results/winograd_weight_channels_last_avx*.json)."""
    channels = min(x.shape[1], grad_out.shape[1])
    pixels = x.shape[2] * x.shape[3]
    if kind == "winograd":
        return channels >= 256
    if kind != "im2col" or channels < 64:
        return False
    if is_channels_last(x):
        return pixels <= 17 * 17 or (channels >= 256 and pixels <= 33 * 33)
    return pixels <= 9 * 9


def is_channels_last(t: torch.Tensor) -> bool:
    """Laid out channels_last and not also NCHW-contiguous (1x1 maps and single channels are both)."""
    return t.is_contiguous(memory_format=torch.channels_last) and not t.is_contiguous()


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
    # In the parameter's layout: autograd would copy a permuted view when it accumulates it, element by element.
    return dw.reshape(k, 3, 3, c).permute(0, 3, 1, 2).contiguous()


def weight_grad_3x3(x: torch.Tensor, grad_out: torch.Tensor, tiling: Tiling | None = None) -> torch.Tensor:
    """torch.nn.grad.conv2d_weight(x, [K, C, 3, 3], grad_out, padding=1) for x [N, C, H, W] (H, W even) and
    grad_out [N, K, H, W] -> [K, C, 3, 3], by `tiling` (default: tiling_for(H, W)). Differentiable where a graph
    is being recorded."""
    n, c, h, width = x.shape
    k = grad_out.shape[1]
    tiling = tiling or tiling_for(h, width)
    if h % tiling.m or width % tiling.m or grad_out.shape[0] != n or tuple(grad_out.shape[2:]) != (h, width):
        raise ValueError(
            f"weight_grad_3x3: {tiling.name} needs x [N, C, H, W] with H, W multiples of {tiling.m} and grad_out "
            f"[N, K, H, W]; got {tuple(x.shape)} and {tuple(grad_out.shape)}"
        )
    differentiable = _records_graph(x, grad_out)
    du = None  # [(m + 2)^2, K, C], summed over chunks of images
    for i, j in _image_chunks(x, max(c, k), tiling):
        v = _input_tiles(x[i:j], tiling, differentiable)
        dm = _output_grad_tiles(grad_out[i:j], tiling, differentiable)
        part = torch.bmm(dm.transpose(1, 2), v)
        if du is None:
            du = part
        else:
            du = du + part if differentiable else du.add_(part)
    return _filter_grad(du, tiling, c, k)


def transpose_route(
    x: torch.Tensor,
    w: torch.Tensor,
    b: torch.Tensor | None,
    stride: Sequence[int],
    dilation: Sequence[int],
    groups: int,
) -> bool:
    """Whether conv_transpose2d(x, w, b, stride=2, ...) is computed here (conv_transpose3x3_stride2): float32 CPU,
    3x3, stride 2, no autograd graph being recorded, and wide enough to pay (any padding and output padding)."""
    return (
        _eligible(x, w, w.shape, dilation, groups)
        and (b is None or b.dtype == torch.float32)
        and w.shape[0] == x.shape[1]
        and tuple(stride) == (2, 2)
        and not _records_graph(x, w, b)
        and (force or transpose_pays(x, w))
    )


def transpose_pays(x: torch.Tensor, w: torch.Tensor) -> bool:
    """From 16 channels: 0.43-0.76x oneDNN's time from 16 to 512 channels at 4-64 px with AVX2 and with AVX-512
    kernels; 8 channels gain too but not at 64 px (1.0x), and are left to oneDNN (one thread, batch 16, host memory
    kept: benchmarks/results/winograd_avx*.json, winograd_transpose_narrow_avx*.json)."""
    return min(x.shape[1], w.shape[1]) >= 16


def conv_transpose3x3_stride2(
    x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None, padding: Sequence[int], output_padding: Sequence[int]
) -> torch.Tensor:
    """F.conv_transpose2d(x, w, b, stride=2, padding, output_padding) for w [C, K, 3, 3] -> channels_last
    [N, K, H', W'], no graph. One matrix product gives every input pixel's 3x3 contribution to the output, [N, H, W,
    9 K]; nine strided additions place them (col2im). oneDNN's transposed kernel measured ~1.7x slower at 512
    channels (the generator's upsampling convolutions, and the input gradient of each downsampling one)."""
    n, c, h, width = x.shape
    k = w.shape[1]
    cols = x.permute(0, 2, 3, 1).reshape(-1, c) @ w.permute(0, 2, 3, 1).reshape(c, 9 * k)
    cols = cols.view(n, h, width, 3, 3, k)
    full_h, full_w = 2 * h + 1 + output_padding[0], 2 * width + 1 + output_padding[1]
    full = x.new_zeros([n, full_h, full_w, k])
    for dy in range(3):
        for dx in range(3):
            full[:, dy : dy + 2 * h : 2, dx : dx + 2 * width : 2] += cols[:, :, :, dy, dx]
    out = full[:, padding[0] : full_h - padding[0], padding[1] : full_w - padding[1]]
    if b is not None:
        out += b
    return out.permute(0, 3, 1, 2)


# ----------------------------------------------------------------------------------------------------
# Forward by Winograd, and the tile transforms: one Kronecker-matrix product over the gathered tile samples where no
# autograd graph is recorded, the programs on stacked views where one is (differentiable again).


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
    """Where Winograd beats oneDNN's forward with AVX2 and with AVX-512 kernels (one thread, batch 16, host memory
    kept: benchmarks/results/winograd_avx2.json, winograd_avx512.json): from 256 channels at 16-32 px (AVX2
    0.46-0.65x, AVX-512 0.51-0.76x) and at 512 channels from 8 px (0.57x, 0.78x). Left to oneDNN: 256 channels at
    8 px and 512 at 4 px (they gain with AVX2, 0.73-0.78x, not with AVX-512, 0.99-1.10x), and below 256 channels
    (128: AVX2 0.87-0.98x from 8 px, AVX-512 1.01-1.21x)."""
    channels = min(x.shape[1], w.shape[0])
    pixels = x.shape[2] * x.shape[3]
    return (channels >= 256 and pixels >= 16 * 16) or (channels >= 512 and pixels >= 8 * 8)


TILE_BYTES = 256 * 2**20  # tiles of at most this many bytes at once: larger batches go in chunks of images


def _image_chunks(x: torch.Tensor, channels: int, tiling: Tiling) -> list[tuple[int, int]]:
    """[start, stop) image ranges whose transformed tiles of `channels` channels fit in TILE_BYTES."""
    n, _, h, width = x.shape
    per_image = (h // tiling.m) * (width // tiling.m) * tiling.size**2 * channels * x.element_size()
    step = max(1, TILE_BYTES // max(1, per_image))
    return [(i, min(i + step, n)) for i in range(0, n, step)]


def conv3x3(
    x: torch.Tensor,
    w: torch.Tensor,
    b: torch.Tensor | None = None,
    tiling: Tiling | None = None,
    transposed: bool = False,
) -> torch.Tensor:
    """F.conv2d(x, w, b, padding=1) for x [N, C, H, W] (H, W even), w [K, C, 3, 3] -> [N, K, H, W], no graph,
    by `tiling` (default: tiling_for(H, W)); transposed: F.conv_transpose2d(x, w, b, padding=1) for w [C, K, 3, 3]
    (the input gradient of a stride-1 convolution), the same computation without a flipped copy of w."""
    n, c, h, width = x.shape
    tiling = tiling or tiling_for(h, width)
    if h % tiling.m or width % tiling.m:
        raise ValueError(f"conv3x3: {tiling.name} needs H, W multiples of {tiling.m}; got x {tuple(x.shape)}")
    u = _filter_tiles(w, tiling, transposed)
    k = u.shape[2]
    th, tw = h // tiling.m, width // tiling.m
    chunks = _image_chunks(x, max(c, k), tiling)
    if len(chunks) == 1:
        return _output_tiles(torch.bmm(_input_tiles(x, tiling), u), tiling, n, th, tw, b)
    y = x.new_empty([n, k, h, width])
    for i, j in chunks:
        y[i:j] = _output_tiles(torch.bmm(_input_tiles(x[i:j], tiling), u), tiling, j - i, th, tw, b)
    return y


def _input_tiles(x: torch.Tensor, tiling: Tiling, differentiable: bool = False) -> torch.Tensor:
    """x [N, C, H, W] -> BT d B of every (m + 2)^2 window (stride m) of the zero-padded image: [(m + 2)^2, tiles, C]."""
    n, c, h, width = x.shape
    m, size = tiling.m, tiling.size
    th, tw = h // m, width // m
    if differentiable:
        xp = F.pad(x.permute(0, 2, 3, 1), (0, 0, 1, 1, 1, 1))  # [N, H+2, W+2, C]
        row_views = [xp[:, i : i + m * th : m] for i in range(size)]  # [N, th, W+2, C] each
        rows = run_program(tiling.bt, row_views)
        columns = [[t[:, :, j : j + m * tw : m] for j in range(size)] for t in rows]
        v = torch.stack([tile for views in columns for tile in run_program(tiling.bt, views)])
        return v.view(size * size, n * th * tw, c)
    # Sample (i, j) of every tile, gathered straight from x (the padding is the first or last tile row or column
    # of the first or last sample), then every tile's transform in one matrix product.
    xl = x.permute(0, 2, 3, 1)  # [N, H, W, C]: a view where x is channels_last, as the layers here write it
    d = x.new_empty([size, size, n, th, tw, c])
    for i in range(size):
        rows, ys = _tile_samples(i, m, th)
        for j in range(size):
            cols, xs = _tile_samples(j, m, tw)
            d[i, j, :, rows, cols].copy_(xl[:, ys, xs])
    for padding in (d[0, :, :, 0], d[-1, :, :, -1], d[:, 0, :, :, 0], d[:, -1, :, :, -1]):
        padding.zero_()
    bt = _tile_transform(tiling, "bt", x.dtype, x.device)
    return (bt @ d.view(size * size, -1)).view(size * size, n * th * tw, c)


def _tile_samples(i: int, m: int, tiles: int) -> tuple[slice, slice]:
    """Sample i of each (m + 2)-wide tile along one axis of the image padded by 1: (the tiles whose sample lies
    inside the image, the image positions they read)."""
    first = 1 if i == 0 else 0  # the first tile's sample 0 is padding
    stop = tiles - 1 if i == m + 1 else tiles  # the last tile's sample m + 1 is padding
    return slice(first, stop), slice(first * m + i - 1, (stop - 1) * m + i, m)


def _filter_tiles(w: torch.Tensor, tiling: Tiling, transposed: bool = False) -> torch.Tensor:
    """w [K, C, 3, 3] (correlation) -> G g GT: [(m + 2)^2, C, K], a transposed view of [(m + 2)^2, K, C]. The
    product reads w in its own order and bmm takes the view as it is: no permuted copy of w, which took as long
    as the product itself. transposed: w [C, K, 3, 3] of a transposed convolution, whose correlation kernel is
    w.transpose(0, 1).flip([2, 3]): the flip reverses the taps, which G's columns take in reverse order instead."""
    kg = _filter_transform(tiling, w.dtype, w.device)
    if transposed:
        c, k = w.shape[:2]
        return (kg.flip(1) @ w.reshape(c * k, 9).t()).view(-1, c, k)
    k, c = w.shape[:2]
    return (kg @ w.reshape(k * c, 9).t()).view(-1, k, c).transpose(1, 2)


def _output_tiles(mt: torch.Tensor, tiling: Tiling, n: int, th: int, tw: int, b: torch.Tensor | None) -> torch.Tensor:
    """[(m + 2)^2, tiles, K] -> AT M A per tile (+ bias): the m x m outputs of every tile, [N, K, m th, m tw]."""
    k = mt.shape[-1]
    m, size = tiling.m, tiling.size
    at = _tile_transform(tiling, "at", mt.dtype, mt.device)
    yt = (at @ mt.reshape(size * size, -1)).view(m, m, n, th, tw, k)
    y = mt.new_empty([n, th, m, tw, m, k])
    if b is None:
        y.copy_(yt.permute(2, 3, 0, 4, 1, 5))
    else:
        torch.add(yt.permute(2, 3, 0, 4, 1, 5), b, out=y)
    return y.view(n, m * th, m * tw, k).permute(0, 3, 1, 2)  # channels_last: the next layer's tiles read it in order


def _output_grad_tiles(g: torch.Tensor, tiling: Tiling, differentiable: bool = False) -> torch.Tensor:
    """Adjoint of the output transform: grad_out [N, K, H, W] -> A dY AT per m x m tile, [(m + 2)^2, tiles, K]."""
    n, k, h, width = g.shape
    m, size = tiling.m, tiling.size
    th, tw = h // m, width // m
    g = g.permute(0, 2, 3, 1).reshape(n, th, m, tw, m, k)
    if differentiable:
        rows = run_program(tiling.a, [g[:, :, p] for p in range(m)])  # [N, th, tw, m, K] each
        out = torch.stack([tile for t in rows for tile in run_program(tiling.a, [t[:, :, :, q] for q in range(m)])])
        return out.view(size * size, n * th * tw, k)
    e = g.new_empty([m, m, n, th, tw, k])
    e.copy_(g.permute(2, 4, 0, 1, 3, 5))
    a = _tile_transform(tiling, "a", g.dtype, g.device)
    return (a @ e.view(m * m, -1)).view(size * size, n * th * tw, k)


def _filter_grad(du: torch.Tensor, tiling: Tiling, c: int, k: int) -> torch.Tensor:
    """[(m + 2)^2, K, C] gradient w.r.t. the transformed filter -> back through G: [K, C, 3, 3], contiguous (the
    parameter's layout: a permuted view would be copied by autograd's gradient accumulation, element by element)."""
    kg = _filter_transform(tiling, du.dtype, du.device)
    return (du.reshape(-1, k * c).t() @ kg).view(k, c, 3, 3)


# ----------------------------------------------------------------------------------------------------
# The float32 rounding bound of the Winograd routes (derivation in the module docstring).

UNIT_ROUNDOFF = 2.0**-24  # float32, round to nearest


def absolute(tiling: Tiling) -> Tiling:
    """The same programs and filter transform with every constant replaced by its absolute value: run on |inputs|,
    it sums the absolute values of the monomials along every path, the scale of the rounding bound."""
    return Tiling(
        name=f"|{tiling.name}|",
        m=tiling.m,
        g=tuple(tuple(abs(v) for v in row) for row in tiling.g),
        bt=tuple((dst, a, b, abs(alpha)) for dst, a, b, alpha in tiling.bt),
        at=tuple((dst, a, b, abs(alpha)) for dst, a, b, alpha in tiling.at),
        a=tuple((dst, a, b, abs(alpha)) for dst, a, b, alpha in tiling.a),
    )


def _exact_scale(alpha: float) -> bool:
    """Multiplying by alpha rounds nothing: alpha is +-2^k."""
    mantissa, _ = math.frexp(abs(alpha))
    return mantissa == 0.5


def program_roundings(program: Sequence[Step]) -> int:
    """The most roundings on any path from an input to an output of `program`: one per addition, one more for a
    scale that is not a power of two (whether torch.add fuses it or not)."""
    depth: dict[str, int] = {}
    for dst, a, b, alpha in program:
        scaled = 0 if _exact_scale(alpha) else 1
        if b is None:
            depth[dst] = depth.get(a, 0) + scaled
        else:
            depth[dst] = max(depth.get(a, 0), depth.get(b, 0) + scaled) + 1
    return max(depth[name] for name in _outputs(program))


def matrix_roundings(matrix: torch.Tensor) -> int:
    """The most roundings of one output of matrix @ inputs, in any summation order: one per addition of its nonzero
    terms, one more where a constant is not a power of two."""
    worst = 0
    for row in matrix.tolist():
        terms = [v for v in row if v != 0]
        worst = max(worst, len(terms) - 1 + any(not _exact_scale(v) for v in terms))
    return worst


def transform_roundings(tiling: Tiling, which: str) -> int:
    """n of a 2-D tile transform ('bt', 'at' or 'a') by either route: its program along the rows, then the columns
    (where a graph is recorded), or one product with its Kronecker matrix (where none is)."""
    program = {"bt": tiling.bt, "at": tiling.at, "a": tiling.a}[which]
    matrix = _tile_transform(tiling, which, torch.float64, torch.device("cpu"))
    return max(2 * program_roundings(program), matrix_roundings(matrix))


def roundings(tiling: Tiling, op: str, terms: int) -> int:
    """n of the bound for op 'forward' (terms: input channels C) or 'weight' (terms: tiles summed, N th tw)."""
    if op == "forward":
        filter_tiles = 1 + 9  # G's constants to float32; a 9-term product and sum
        input_tiles = transform_roundings(tiling, "bt")
        outputs = transform_roundings(tiling, "at") + 1  # and the bias
        return filter_tiles + input_tiles + 1 + (terms - 1) + outputs
    if op == "weight":
        tiles = transform_roundings(tiling, "bt") + transform_roundings(tiling, "a")
        filter_grad = 1 + tiling.size**2  # G's constants to float32; a (m + 2)^2-term product and sum
        return tiles + 1 + (terms - 1) + filter_grad
    raise ValueError(f"roundings: op must be 'forward' or 'weight', got {op!r}")


def gamma(n: int, u: float = UNIT_ROUNDOFF) -> float:
    """Higham's gamma_n: the relative error of n roundings compounded, for n u < 1."""
    if n * u >= 1:
        raise ValueError(f"gamma: {n} roundings of {u:g} do not bound anything (n u >= 1)")
    return n * u / (1 - n * u)


def rounding_bound(
    x: torch.Tensor,
    w_or_grad_out: torch.Tensor,
    b: torch.Tensor | None = None,
    op: str = "forward",
    tiling: Tiling | None = None,
) -> torch.Tensor:
    """Elementwise float64 bound on |float32 result - exact result| of conv3x3(x, w, b) (op='forward') or
    weight_grad_3x3(x, grad_out) (op='weight'), by `tiling` (default: tiling_for(H, W))."""
    n, c, h, width = x.shape
    tiling = tiling or tiling_for(h, width)
    scale_tiling = absolute(tiling)
    xa, other = x.detach().double().abs(), w_or_grad_out.detach().double().abs()
    with torch.no_grad():
        if op == "forward":
            bias = None if b is None else b.detach().double().abs()
            scale = conv3x3(xa, other, bias, scale_tiling)
            terms = c
        else:
            scale = weight_grad_3x3(xa, other, scale_tiling)
            terms = n * (h // tiling.m) * (width // tiling.m)
    return gamma(roundings(tiling, op, terms)) * scale
