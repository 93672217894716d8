"""CPU 3x3 convolutions by Winograd (F(2x2, 3x3), F(4x4, 3x3)) and im2col: F.conv2d and torch.nn.grad.conv2d_weight
are the oracles."""

import os
import pathlib
import subprocess
import sys

import pytest
import torch

from torch_utils.ops import conv2d_gradfix, conv2d_winograd
from torch_utils.ops.conv2d_winograd import F2, F4, run_program
from training.networks import Discriminator, Generator

REPO = pathlib.Path(__file__).resolve().parents[1]
TILINGS = [F2, F4]

SHAPES = [  # (N, C, K, H, W)
    (2, 5, 7, 6, 8),
    (1, 3, 2, 4, 4),
    (3, 8, 8, 10, 4),
    (2, 4, 6, 16, 16),
    (1, 2, 3, 2, 2),
]


def _inputs(shape, dtype=torch.float64, channels_last=False, seed=0):
    n, c, k, h, w = shape
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, c, h, w, generator=gen, dtype=dtype)
    g = torch.randn(n, k, h, w, generator=gen, dtype=dtype)
    if channels_last:
        x, g = x.to(memory_format=torch.channels_last), g.to(memory_format=torch.channels_last)
    return x, g


def _tiling_cases(shapes):
    """Each shape with the default tiling (F(4x4, 3x3) where H, W divide by 4), and with F(2x2, 3x3) forced where
    the default is F(4x4, 3x3)."""
    cases = [(shape, None) for shape in shapes]
    cases += [(shape, F2) for shape in shapes if conv2d_winograd.tiling_for(*shape[3:]) is F4]
    return cases


@pytest.mark.parametrize("tiling", TILINGS, ids=lambda t: t.name)
def test_tile_programs_compute_minimal_filtering_and_its_adjoint(tiling):
    """In 1-D, float64: AT [(G g) * (BT d)] is the m-output correlation of d with g; A is the adjoint of AT; and in
    2-D each transform's Kronecker matrix (the route where no graph is recorded) is its program along both axes."""
    gen = torch.Generator().manual_seed(7)
    m, size = tiling.m, tiling.size
    d, taps = torch.randn(size, 5, generator=gen, dtype=torch.float64), torch.randn(3, 5, dtype=torch.float64)
    transformed = torch.stack(run_program(tiling.bt, list(d))) * (torch.tensor(tiling.g, dtype=torch.float64) @ taps)
    y = torch.stack(run_program(tiling.at, list(transformed)))
    want = torch.stack([sum(d[i + t] * taps[t] for t in range(3)) for i in range(m)])
    torch.testing.assert_close(y, want, rtol=1e-12, atol=1e-12)
    z, e = (
        torch.randn(m, 5, generator=gen, dtype=torch.float64),
        torch.randn(size, 5, generator=gen, dtype=torch.float64),
    )
    adjoint = torch.stack(run_program(tiling.a, list(z)))
    forward = torch.stack(run_program(tiling.at, list(e)))
    torch.testing.assert_close((adjoint * e).sum(0), (z * forward).sum(0), rtol=1e-12, atol=1e-12)
    for which, program, n_in in (("bt", tiling.bt, size), ("at", tiling.at, size), ("a", tiling.a, m)):
        tile = torch.randn(n_in, n_in, 3, generator=gen, dtype=torch.float64)
        rows = run_program(program, list(tile))  # along the first axis, then along the second
        separable = torch.stack([torch.stack(run_program(program, list(row))) for row in rows])
        kron = conv2d_winograd._tile_transform(tiling, which, torch.float64, torch.device("cpu"))
        torch.testing.assert_close(kron @ tile.reshape(-1, 3), separable.reshape(-1, 3), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("shape, tiling", _tiling_cases(SHAPES))
@pytest.mark.parametrize("channels_last", [False, True])
def test_weight_gradient_equals_conv2d_weight(shape, tiling, channels_last):
    x, g = _inputs(shape, channels_last=channels_last)
    want = torch.nn.grad.conv2d_weight(x, [shape[2], shape[1], 3, 3], g, 1, 1)
    got = conv2d_winograd.weight_grad_3x3(x, g, tiling)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)
    assert got.is_contiguous()  # the parameter's layout: autograd accumulates it without a copy


@pytest.mark.parametrize("tiling", TILINGS, ids=lambda t: t.name)
def test_weight_gradient_is_differentiable_like_the_oracle(tiling):
    """First and second derivatives of a function of the weight gradient, w.r.t. both of its inputs."""
    x, g = _inputs((2, 3, 4, 8, 4))
    x.requires_grad_(True)
    g.requires_grad_(True)
    ours = lambda a, b: conv2d_winograd.weight_grad_3x3(a, b, tiling)  # noqa: E731
    assert torch.autograd.gradcheck(ours, (x[:1, :2, :4], g[:1, :2, :4]))
    results = []
    for fn in (ours, lambda a, b: torch.nn.grad.conv2d_weight(a, [4, 3, 3, 3], b, 1, 1)):
        dw = fn(x, g)
        gx, gg = torch.autograd.grad((dw * dw).sum(), [x, g], create_graph=True)
        hx, hg = torch.autograd.grad((gx * gg.sum()).sum() + gg.square().sum(), [x, g])
        results.append([dw, gx, gg, hx, hg])
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize(
    "program, expect",
    [
        ((("o0", "i0", "i1", 1),), 1),
        ((("o0", "i0", "i1", -4),), 1),  # a power of two scales exactly
        ((("o0", "i0", "i1", 5),), 2),  # 5 b rounds, then the sum
        ((("o0", "i0", None, 1),), 0),
        ((("o0", "i0", None, 1 / 6),), 1),
        ((("p", "i0", "i1", 1), ("o0", "i2", "p", 3), ("o1", "i2", None, 2)), 3),  # p: 1, then 3 p: 2, then + i2
        (F2.bt, 1),
        (F2.at, 2),
        (F2.a, 1),
        (F4.bt, 2),
        (F4.at, 3),
        (F4.a, 2),
    ],
)
def test_program_roundings_counts_the_longest_path(program, expect):
    assert conv2d_winograd.program_roundings(program) == expect


@pytest.mark.parametrize("tiling", TILINGS, ids=lambda t: t.name)
def test_absolute_tiling_bounds_every_transform_of_absolute_values(tiling):
    """Run on |d|, the absolute programs give at least |T| |d| for each transform T (shared terms can only add paths),
    and the absolute filter transform is |G|: the scale of the rounding bound covers every monomial."""
    gen = torch.Generator().manual_seed(9)
    absolute = conv2d_winograd.absolute(tiling)
    for program, abs_program, n_in in ((tiling.bt, absolute.bt, tiling.size), (tiling.at, absolute.at, tiling.size)):
        eye = torch.eye(n_in, dtype=torch.float64)
        matrix = torch.stack(run_program(program, list(eye)))  # T: column j is T applied to the j-th unit vector
        d = torch.randn(n_in, 4, generator=gen, dtype=torch.float64).abs()
        assert (torch.stack(run_program(abs_program, list(d))) >= matrix.abs() @ d - 1e-12).all()
    assert torch.equal(torch.tensor(absolute.g), torch.tensor(tiling.g).abs())


def _rounding_inputs(kind, shape, seed):
    """Standard normal entries, or entries spread over six decades with random signs (heavy cancellation)."""
    gen = torch.Generator().manual_seed(seed)
    t = torch.randn(shape, generator=gen)
    if kind == "six-decades":
        t = t.sign() * 10 ** (6 * torch.rand(shape, generator=gen) - 3)
    return t


def _assert_within_bound_and_bfloat16_breaks_it(compute, exact, bound, inputs):
    """The float32 route is within the derived bound elementwise; the same route in bfloat16 (8 mantissa bits fewer,
    as a BLAS running float32 products in bfloat16 would give) is not: the test can fail."""
    err = (compute(*inputs).double() - exact).abs()
    assert (err <= bound).all(), f"max error / bound = {float((err / bound).max()):.3g}"
    err_bf16 = (compute(*(t.bfloat16() for t in inputs)).double() - exact).abs()
    assert (err_bf16 > bound).any(), f"bfloat16 stays within the bound: max ratio {float((err_bf16 / bound).max()):.3g}"


@pytest.mark.parametrize("kind", ["normal", "six-decades"])
@pytest.mark.parametrize("tiling", TILINGS, ids=lambda t: t.name)
def test_float32_forward_rounding_is_within_the_derived_bound(tiling, kind):
    x = _rounding_inputs(kind, (4, 256, 16, 16), seed=3)
    w = _rounding_inputs(kind, (256, 256, 3, 3), seed=4) / 48
    b = _rounding_inputs(kind, (256,), seed=5)
    exact = torch.nn.functional.conv2d(x.double(), w.double(), b.double(), padding=1)
    bound = conv2d_winograd.rounding_bound(x, w, b, op="forward", tiling=tiling)
    compute = lambda x, w, b: conv2d_winograd.conv3x3(x, w, b, tiling=tiling)  # noqa: E731
    _assert_within_bound_and_bfloat16_breaks_it(compute, exact, bound, (x, w, b))


@pytest.mark.parametrize("kind", ["normal", "six-decades"])
@pytest.mark.parametrize("tiling", TILINGS, ids=lambda t: t.name)
def test_float32_weight_gradient_rounding_is_within_the_derived_bound(tiling, kind):
    x = _rounding_inputs(kind, (8, 64, 16, 16), seed=1).to(memory_format=torch.channels_last)
    g = _rounding_inputs(kind, (8, 64, 16, 16), seed=2).to(memory_format=torch.channels_last)
    exact = torch.nn.grad.conv2d_weight(x.double(), [64, 64, 3, 3], g.double(), 1, 1)
    bound = conv2d_winograd.rounding_bound(x, g, op="weight", tiling=tiling)
    compute = lambda x, g: conv2d_winograd.weight_grad_3x3(x, g, tiling)  # noqa: E731
    _assert_within_bound_and_bfloat16_breaks_it(compute, exact, bound, (x, g))


def test_rounding_bound_refuses_what_it_cannot_bound():
    with pytest.raises(ValueError, match="op must be"):
        conv2d_winograd.roundings(F2, "backward", 4)
    with pytest.raises(ValueError, match="n u >= 1"):
        conv2d_winograd.gamma(2**24)


def test_rejects_shapes_it_cannot_tile():
    with pytest.raises(ValueError, match="multiples of 2"):
        conv2d_winograd.weight_grad_3x3(torch.randn(1, 2, 5, 4), torch.randn(1, 3, 5, 4))
    with pytest.raises(ValueError, match="grad_out"):
        conv2d_winograd.weight_grad_3x3(torch.randn(1, 2, 4, 4), torch.randn(1, 3, 2, 2))
    with pytest.raises(ValueError, match=r"F\(4x4, 3x3\) needs .* multiples of 4"):
        conv2d_winograd.weight_grad_3x3(torch.randn(1, 2, 6, 4), torch.randn(1, 3, 6, 4), F4)
    with pytest.raises(ValueError, match=r"F\(4x4, 3x3\) needs H, W multiples of 4"):
        conv2d_winograd.conv3x3(torch.randn(1, 2, 6, 4), torch.randn(3, 2, 3, 3), tiling=F4)


NORMWISE = 5e-5  # two float32 results, each within rounding_bound of the exact one (a few layers of <= 6 channels)


def assert_close_normwise(a, b, tol=NORMWISE):
    """max|a - b| <= tol * max|b|: float32 results of different summation orders, elementwise near-zeros aside."""
    err, scale = float((a - b).abs().max()), float(b.abs().max())
    assert err <= tol * scale, f"max|a - b| = {err:.3g} > {tol:g} x {scale:.3g}"


X, G = torch.randn(2, 4, 8, 8), torch.randn(2, 6, 8, 8)


@pytest.mark.parametrize(
    "x, g, w_shape, stride, padding, groups, expect",
    [
        (X, G, [6, 4, 3, 3], (1, 1), (1, 1), 1, "winograd"),
        (X.double(), G.double(), [6, 4, 3, 3], (1, 1), (1, 1), 1, ""),  # float64: the direct kernel
        (X, G, [6, 4, 1, 1], (1, 1), (0, 0), 1, ""),
        (X, G[:, :, :4, :4], [6, 4, 3, 3], (2, 2), (1, 1), 1, "im2col"),
        (X, G[:, :, :3, :3], [6, 4, 3, 3], (2, 2), (0, 0), 1, "im2col"),
        (X, G[:, :, :4, :4], [6, 4, 3, 3], (2, 2), (0, 0), 1, ""),  # not what conv2d(x, w, 2, 0) gives
        (X, G[:, :, 1:-1, 1:-1], [6, 4, 3, 3], (1, 1), (0, 0), 1, ""),
        (X, G[:, :4], [4, 2, 3, 3], (1, 1), (1, 1), 2, ""),
        (X[:, :, :7, :7], G[:, :, :7, :7], [6, 4, 3, 3], (1, 1), (1, 1), 1, ""),
    ],
)
def test_route_only_covers_what_it_computes(monkeypatch, x, g, w_shape, stride, padding, groups, expect):
    monkeypatch.setattr(conv2d_winograd, "force", True)  # these layers are too narrow to pay; the geometry is tested
    assert conv2d_winograd.route(x, g, w_shape, stride, padding, (1, 1), groups) == expect


@pytest.mark.parametrize(
    "channels, size, stride, expect, channels_last",
    [
        (512, 32, 1, "winograd", False),  # the cifar config's layers: 0.46-0.52x oneDNN's time (AVX2, AVX-512)
        (256, 16, 1, "winograd", False),
        (256, 32, 1, "winograd", False),
        (256, 4, 1, "winograd", False),
        (128, 16, 1, "", False),  # gains with AVX2 kernels, loses with AVX-512 ones
        (128, 32, 1, "", False),
        (128, 4, 1, "", False),
        (64, 8, 1, "", False),
        (64, 16, 1, "", False),
        (32, 32, 1, "", False),  # the tiny config: 4x slower than oneDNN
        (512, 9, 2, "im2col", False),
        (64, 9, 2, "im2col", False),
        (512, 33, 2, "", False),  # NCHW: oneDNN reads it as it is
        (32, 9, 2, "", False),
        (512, 33, 2, "im2col", True),  # channels_last (the FIR filter's output): oneDNN would need a dense copy
        (256, 33, 2, "im2col", True),
        (128, 33, 2, "", True),
        (64, 17, 2, "im2col", True),
    ],
)
def test_route_is_taken_only_where_it_beats_onednn(channels, size, stride, expect, channels_last):
    x = torch.empty(1, channels, size, size)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    padding = 1 if stride == 1 else 0
    g = torch.empty(1, channels, (size + 2 * padding - 3) // stride + 1, (size + 2 * padding - 3) // stride + 1)
    w_shape = [channels, channels, 3, 3]
    assert conv2d_winograd.route(x, g, w_shape, (stride,) * 2, (padding,) * 2, (1, 1), 1) == expect
    assert conv2d_winograd.pays(expect, x, g) == bool(expect)


@pytest.mark.parametrize(
    "shape, stride, padding",
    [
        ((2, 5, 7, 9, 9), 2, 0),
        ((2, 5, 7, 8, 8), 2, 1),
        ((1, 3, 4, 33, 33), 2, 0),
        ((2, 4, 3, 10, 7), 3, 1),
    ],
)
def test_strided_weight_gradient_equals_conv2d_weight_to_second_order(shape, stride, padding):
    n, c, k, h, w = shape
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(n, c, h, w, generator=gen, dtype=torch.float64, requires_grad=True)
    oh, ow = (h + 2 * padding - 3) // stride + 1, (w + 2 * padding - 3) // stride + 1
    g = torch.randn(n, k, oh, ow, generator=gen, dtype=torch.float64, requires_grad=True)
    results = []
    for fn in (
        lambda: conv2d_winograd.weight_grad(x, g, [k, c, 3, 3], (stride, stride), (padding, padding)),
        lambda: torch.nn.grad.conv2d_weight(x, [k, c, 3, 3], g, stride, padding),
    ):
        dw = fn()
        gx, gg = torch.autograd.grad((dw * dw).sum(), [x, g], create_graph=True)
        hx, hg = torch.autograd.grad((gx * gx).sum() + gg.square().sum(), [x, g])
        results.append([dw, gx, gg, hx, hg])
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


def _assert_routed_through_gradfix(monkeypatch, counted: str, expected_calls: int, shapes, layer) -> None:
    """layer(x, w, b) on random tensors of `shapes` through conv2d_gradfix: its value, the input/weight/bias
    gradients of sum(value^2), and an inference call, with the routes forced on and then off. The forced run
    calls conv2d_winograd.<counted> expected_calls times, and both runs agree to float32 rounding."""
    monkeypatch.setattr(conv2d_winograd, "force", True)
    calls = []
    real = getattr(conv2d_winograd, counted)
    monkeypatch.setattr(conv2d_winograd, counted, lambda *args, **kw: calls.append(1) or real(*args, **kw))
    results = []
    for enabled in (True, False):
        monkeypatch.setattr(conv2d_winograd, "enabled", enabled)
        gen = torch.Generator().manual_seed(4)
        x, w, b = (torch.randn(shape, generator=gen).requires_grad_() for shape in shapes)
        y = layer(x, w, b)
        (y * y).sum().backward()
        with torch.no_grad():
            inference = layer(x, w, b)  # the plain path (no autograd.Function)
        results.append((y.detach(), inference, x.grad, w.grad, b.grad))
    assert len(calls) == expected_calls
    for ours, direct in zip(*results):
        assert_close_normwise(ours, direct)


def _padded_3x3(transpose: bool):
    """(shapes, layer) of a stride-1 3x3 conv (or transposed conv) with padding 1 through conv2d_gradfix."""
    op = conv2d_gradfix.conv_transpose2d if transpose else conv2d_gradfix.conv2d
    shapes = ((2, 6 if transpose else 5, 8, 8), (6, 5, 3, 3), (5 if transpose else 6,))
    return shapes, lambda x, w, b: op(x, w, b, padding=1)


@pytest.mark.parametrize("transpose", [False, True])
def test_gradfix_weight_gradient_uses_it_and_agrees_with_the_direct_kernel(monkeypatch, transpose):
    _assert_routed_through_gradfix(monkeypatch, "weight_grad", 1, *_padded_3x3(transpose))


def _run(monkeypatch, enabled, fn):
    monkeypatch.setattr(conv2d_winograd, "enabled", enabled)
    monkeypatch.setattr(conv2d_winograd, "force", True)  # the small test networks would otherwise never take it
    torch.manual_seed(0)
    return fn()


def test_networks_training_gradients_and_r1_equal_the_direct_path(monkeypatch):
    """The fused path's oracle at network level: G's and D's weight gradients, and D's R1 penalty gradient
    (second order through every convolution), Winograd on vs off (float32: the networks compute their blocks in
    float32 or float16 whatever their parameters' dtype, so there is no float64 oracle here). Measured worst
    max|a - b| / max|b| over the tensors: 2e-6 at this seed; a seed whose noise-strength gradient (a sum that cancels)
    is small reached 4.7e-5, within the tolerance. A smooth activation (swish): under lrelu, a pre-activation within
    float32 rounding of zero takes the other slope in one run, and gradients then differ by ~1e-3 whichever
    convolution is used."""

    def run():
        G = Generator(
            z_dim=8,
            c_dim=0,
            w_dim=8,
            img_resolution=16,
            img_channels=3,
            mapping_kwargs=dict(num_layers=1),
            synthesis_kwargs=dict(channel_base=128, channel_max=16, activation="swish"),
        )
        D = Discriminator(
            c_dim=0,
            img_resolution=16,
            img_channels=3,
            architecture="resnet",
            channel_base=256,
            channel_max=16,
            block_kwargs=dict(activation="swish"),
            epilogue_kwargs=dict(mbstd_group_size=2, activation="swish"),
        )
        img = G(torch.randn(4, 8), None, noise_mode="const")
        torch.nn.functional.softplus(-D(img, None)).mean().backward()
        real = torch.randn(4, 3, 16, 16, requires_grad=True)
        logits = D(real, None)
        with conv2d_gradfix.no_weight_gradients():
            (grad,) = torch.autograd.grad(logits.sum(), [real], create_graph=True)
        grad.square().sum().backward()
        return [grad.detach()] + [p.grad for p in list(G.parameters()) + list(D.parameters())]

    with_winograd = _run(monkeypatch, True, run)
    direct = _run(monkeypatch, False, run)
    assert sum(g is not None for g in direct) > len(direct) // 2
    for a, b in zip(with_winograd, direct):
        assert (a is None) == (b is None)
        if a is not None:
            assert_close_normwise(a, b, 1e-4)


# ----------------------------------------------------------------------------------------------------
# Forward (and input gradient) by Winograd, and the graph-free fast weight gradient.

FORWARD_SHAPES = [(2, 5, 7, 6, 8), (1, 3, 2, 4, 4), (3, 8, 8, 10, 4), (1, 2, 3, 2, 2), (2, 16, 9, 16, 16)]


@pytest.mark.parametrize("shape, tiling", _tiling_cases(FORWARD_SHAPES))
@pytest.mark.parametrize("layout", ["contiguous", "channels_last", "sliced"])
def test_conv3x3_equals_conv2d(shape, tiling, layout):
    n, c, k, h, w = shape
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(n, c + 2 if layout == "sliced" else c, h, w, generator=gen, dtype=torch.float64)
    if layout == "channels_last":
        x = x.to(memory_format=torch.channels_last)
    elif layout == "sliced":
        x = x[:, 1:-1]
    weight = torch.randn(k, c, 3, 3, generator=gen, dtype=torch.float64)
    bias = torch.randn(k, generator=gen, dtype=torch.float64)
    for b in (None, bias):
        got = conv2d_winograd.conv3x3(x, weight, b, tiling)
        assert got.is_contiguous(memory_format=torch.channels_last)  # as the next layer's tiles read it
        torch.testing.assert_close(got, torch.nn.functional.conv2d(x, weight, b, padding=1), rtol=1e-11, atol=1e-11)


@pytest.mark.parametrize("shape, tiling", _tiling_cases(FORWARD_SHAPES))
def test_transposed_conv3x3_equals_conv_transpose2d(shape, tiling):
    """The input gradient's route: w [C, K, 3, 3] of a transposed convolution, flipped through G's columns."""
    n, c, k, h, w = shape
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(n, c, h, w, generator=gen, dtype=torch.float64)
    weight = torch.randn(c, k, 3, 3, generator=gen, dtype=torch.float64)
    bias = torch.randn(k, generator=gen, dtype=torch.float64)
    want = torch.nn.functional.conv_transpose2d(x, weight, bias, padding=1)
    got = conv2d_winograd.conv3x3(x, weight, bias, tiling, transposed=True)
    torch.testing.assert_close(got, want, rtol=1e-11, atol=1e-11)


@pytest.mark.parametrize("shape", [(2, 6, 5, 8, 6), (2, 6, 5, 8, 12)])  # F(2x2, 3x3), F(4x4, 3x3)
def test_fast_weight_gradient_equals_the_differentiable_one(shape):
    x, g = _inputs(shape)
    fast = conv2d_winograd.weight_grad_3x3(x, g)  # no graph: the preallocated-tiles path
    x.requires_grad_(True)
    recorded = conv2d_winograd.weight_grad_3x3(x, g)  # a graph: the differentiable path
    assert fast.grad_fn is None and recorded.grad_fn is not None
    torch.testing.assert_close(fast, recorded.detach(), rtol=1e-11, atol=1e-11)
    torch.testing.assert_close(fast, torch.nn.grad.conv2d_weight(x.detach(), [5, 6, 3, 3], g, 1, 1))


W = torch.randn(6, 4, 3, 3)


@pytest.mark.parametrize(
    "x, w, stride, padding, dilation, groups, grad, expect",
    [
        (X, W, (1, 1), (1, 1), (1, 1), 1, False, True),
        (X, W, (1, 1), (1, 1), (1, 1), 1, True, False),  # a graph is recorded: oneDNN (autograd's own backward)
        (X.double(), W.double(), (1, 1), (1, 1), (1, 1), 1, False, False),
        (X, W, (2, 2), (1, 1), (1, 1), 1, False, False),
        (X, W, (1, 1), (0, 0), (1, 1), 1, False, False),
        (X, W, (1, 1), (1, 1), (2, 2), 1, False, False),
        (X, W[:, :2], (1, 1), (1, 1), (1, 1), 2, False, False),
        (X[:, :, :7, :7], W, (1, 1), (1, 1), (1, 1), 1, False, False),
        (X, W[:, :, :1, :1], (1, 1), (1, 1), (1, 1), 1, False, False),
    ],
)
def test_forward_route_only_covers_what_it_computes(monkeypatch, x, w, stride, padding, dilation, groups, grad, expect):
    monkeypatch.setattr(conv2d_winograd, "force", True)
    x = x.clone().requires_grad_(grad)
    assert conv2d_winograd.forward_route(x, w, None, stride, padding, dilation, groups) == expect


@pytest.mark.parametrize(
    "channels, size, expect",
    [(512, 32, True), (512, 8, True), (256, 16, True), (256, 8, False), (512, 4, False), (128, 16, False)],
)
def test_forward_route_is_taken_only_where_it_beats_onednn(channels, size, expect):
    x, w = torch.empty(1, channels, size, size), torch.empty(channels, channels, 3, 3)
    assert conv2d_winograd.forward_route(x, w, None, (1, 1), (1, 1), (1, 1), 1) == expect


@pytest.mark.parametrize("transpose", [False, True])
def test_gradfix_forward_and_input_gradient_use_it(monkeypatch, transpose):
    """conv2d_gradfix's forward, the input gradient (a stride-1 transpose) and inference all go through conv3x3."""
    _assert_routed_through_gradfix(monkeypatch, "conv3x3", 3, *_padded_3x3(transpose))


@pytest.mark.parametrize("shape, tiling", [((5, 3, 4, 6, 8), F2), ((5, 3, 4, 8, 8), F4)])
def test_large_batches_go_in_chunks_with_the_same_result(monkeypatch, shape, tiling):
    x, g = _inputs(shape)
    w = torch.randn(4, 3, 3, 3, dtype=torch.float64)
    whole_y, whole_dw = conv2d_winograd.conv3x3(x, w), conv2d_winograd.weight_grad_3x3(x, g)
    h, width = shape[3:]
    tile_bytes = (h // tiling.m) * (width // tiling.m) * tiling.size**2 * 4 * 8  # one image, 4 channels, float64
    monkeypatch.setattr(conv2d_winograd, "TILE_BYTES", 2 * tile_bytes)  # two images per chunk
    assert conv2d_winograd._image_chunks(x, 4, tiling) == [(0, 2), (2, 4), (4, 5)]
    torch.testing.assert_close(conv2d_winograd.conv3x3(x, w), whole_y, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(conv2d_winograd.weight_grad_3x3(x, g), whole_dw, rtol=1e-12, atol=1e-12)


# ----------------------------------------------------------------------------------------------------
# Stride-2 transposed convolutions by one matrix product and col2im.


@pytest.mark.parametrize(
    "shape, padding, output_padding",
    [((2, 5, 7, 6, 8), 0, 0), ((1, 3, 4, 4, 4), 1, 0), ((2, 4, 6, 5, 3), 1, 1), ((1, 2, 3, 1, 1), 0, 1)],
)
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_stride2_transpose_equals_conv_transpose2d(shape, padding, output_padding, layout):
    n, c, k, h, w = shape
    gen = torch.Generator().manual_seed(8)
    x = torch.randn(n, c, h, w, generator=gen, dtype=torch.float64)
    if layout == "channels_last":
        x = x.to(memory_format=torch.channels_last)
    weight = torch.randn(c, k, 3, 3, generator=gen, dtype=torch.float64)
    bias = torch.randn(k, generator=gen, dtype=torch.float64)
    for b in (None, bias):
        got = conv2d_winograd.conv_transpose3x3_stride2(x, weight, b, (padding,) * 2, (output_padding,) * 2)
        want = torch.nn.functional.conv_transpose2d(x, weight, b, 2, padding, output_padding)
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    "x, w, stride, dilation, groups, grad, expect",
    [
        (X, W.transpose(0, 1), (2, 2), (1, 1), 1, False, True),
        (X, W.transpose(0, 1), (2, 2), (1, 1), 1, True, False),  # a graph is recorded: oneDNN
        (X.double(), W.transpose(0, 1).double(), (2, 2), (1, 1), 1, False, False),
        (X, W.transpose(0, 1), (1, 1), (1, 1), 1, False, False),
        (X, W.transpose(0, 1), (2, 2), (2, 2), 1, False, False),
        (X, W.transpose(0, 1)[:, :2], (2, 2), (1, 1), 2, False, False),
        (X, W.transpose(0, 1)[:, :, :1, :1], (2, 2), (1, 1), 1, False, False),
    ],
)
def test_transpose_route_only_covers_what_it_computes(monkeypatch, x, w, stride, dilation, groups, grad, expect):
    monkeypatch.setattr(conv2d_winograd, "force", True)
    x = x.clone().requires_grad_(grad)
    assert conv2d_winograd.transpose_route(x, w, None, stride, dilation, groups) == expect


def test_gradfix_stride2_transpose_and_downsampling_input_gradient_use_it(monkeypatch):
    """Through conv2d_gradfix: a stride-2 transposed conv (its forward, inference) and the input gradient of a
    stride-2 conv (a stride-2 transpose) go through conv_transpose3x3_stride2, with the same values and gradients
    as oneDNN's."""

    def up_then_down(x, w, b):
        return conv2d_gradfix.conv2d(conv2d_gradfix.conv_transpose2d(x, w, b, stride=2), w, stride=2)

    shapes = ((2, 6, 5, 5), (6, 4, 3, 3), (4,))
    _assert_routed_through_gradfix(monkeypatch, "conv_transpose3x3_stride2", 3, shapes, up_then_down)


@pytest.mark.parametrize("channels, size, expect", [(512, 16, True), (64, 32, True), (16, 32, True), (8, 32, False)])
def test_transpose_route_is_taken_only_where_it_beats_onednn(channels, size, expect):
    x, w = torch.empty(1, channels, size, size), torch.empty(channels, channels, 3, 3)
    assert conv2d_winograd.transpose_route(x, w, None, (2, 2), (1, 1), 1) == expect


@pytest.mark.parametrize("value, expect", [(None, "True"), ("off", "False"), ("on", "True")])
def test_the_environment_switch_turns_every_route_off(value, expect):
    env = {k: v for k, v in os.environ.items() if k != conv2d_winograd.SWITCH_ENV}
    if value is not None:
        env[conv2d_winograd.SWITCH_ENV] = value
    code = "from torch_utils.ops import conv2d_winograd; print(conv2d_winograd.enabled)"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=REPO, check=True)
    assert out.stdout.strip() == expect
