"""Reference custom ops vs independent naive definitions (CPU), plus gradient checks in float64."""

import itertools
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.autograd import gradcheck, gradgradcheck

from torch_utils.ops import bias_act, conv2d_gradfix, conv2d_resample, fma, grid_sample_gradfix, upfirdn2d

# ----------------------------------------------------------------------------------------------------
# Naive oracles, written from the definitions (NumPy, no shared code with the ops).


def naive_upfirdn2d(x, f, up=1, down=1, padding=0, flip_filter=False, gain=1.0):
    """Zero-insert, pad/crop, direct 2-D convolution by explicit tap loop, decimate."""
    x = np.asarray(x, dtype=np.float64)
    f = np.ones([1, 1]) if f is None else np.asarray(f, dtype=np.float64)
    if f.ndim == 1:
        f = np.outer(f, f)  # A 1-D filter runs along both axes.
    upx, upy = (up, up) if isinstance(up, int) else up
    downx, downy = (down, down) if isinstance(down, int) else down
    if isinstance(padding, int):
        padding = [padding] * 4
    if len(padding) == 2:
        padding = [padding[0], padding[0], padding[1], padding[1]]
    px0, px1, py0, py1 = padding
    n, c, h, w = x.shape
    z = np.zeros([n, c, h * upy, w * upx])
    z[:, :, ::upy, ::upx] = x
    p = np.zeros([n, c, z.shape[2] + max(py0, 0) + max(py1, 0), z.shape[3] + max(px0, 0) + max(px1, 0)])
    p[:, :, max(py0, 0) : max(py0, 0) + z.shape[2], max(px0, 0) : max(px0, 0) + z.shape[3]] = z
    p = p[:, :, max(-py0, 0) : p.shape[2] - max(-py1, 0), max(-px0, 0) : p.shape[3] - max(-px1, 0)]
    fh, fw = f.shape
    oh, ow = p.shape[2] - fh + 1, p.shape[3] - fw + 1
    out = np.zeros([n, c, oh, ow])
    for i in range(oh):
        for j in range(ow):
            window = p[:, :, i : i + fh, j : j + fw]
            # Convolution flips the filter; flip_filter=True turns it into a correlation.
            taps = f if flip_filter else f[::-1, ::-1]
            out[:, :, i, j] = (window * taps).sum(axis=(2, 3))
    return out[:, :, ::downy, ::downx] * gain


SELU_ALPHA = 1.6732632423543728
SELU_SCALE = 1.0507009873554805


def naive_act(name, x, alpha):
    x = np.asarray(x, dtype=np.float64)
    return {
        "linear": lambda: x,
        "relu": lambda: np.maximum(x, 0),
        "lrelu": lambda: np.where(x > 0, x, alpha * x),
        "tanh": lambda: (np.exp(x) - np.exp(-x)) / (np.exp(x) + np.exp(-x)),
        "sigmoid": lambda: 1 / (1 + np.exp(-x)),
        "elu": lambda: np.where(x > 0, x, np.exp(x) - 1),
        "selu": lambda: SELU_SCALE * np.where(x > 0, x, SELU_ALPHA * (np.exp(x) - 1)),
        "softplus": lambda: np.log(1 + np.exp(x)),
        "swish": lambda: x / (1 + np.exp(-x)),
    }[name]()


OFFICIAL_DEFAULTS = {  # (def_alpha, def_gain) from the official activation table.
    "linear": (0, 1),
    "relu": (0, math.sqrt(2)),
    "lrelu": (0.2, math.sqrt(2)),
    "tanh": (0, 1),
    "sigmoid": (0, 1),
    "elu": (0, 1),
    "selu": (0, 1),
    "softplus": (0, 1),
    "swish": (0, math.sqrt(2)),
}

# ----------------------------------------------------------------------------------------------------
# bias_act


@pytest.mark.parametrize("act", sorted(OFFICIAL_DEFAULTS))
def test_bias_act_defaults_match_official_table(act):
    spec = bias_act.activation_funcs[act]
    assert (spec.def_alpha, spec.def_gain) == pytest.approx(OFFICIAL_DEFAULTS[act])


@pytest.mark.parametrize("act", sorted(OFFICIAL_DEFAULTS))
@pytest.mark.parametrize("gain,clamp,alpha", [(None, None, None), (0.7, 0.5, 0.3), (2.0, 0.0, None)])
def test_bias_act_equals_formula(act, gain, clamp, alpha):
    x = torch.randn(3, 4, 5, dtype=torch.float64) * 2
    b = torch.randn(4, dtype=torch.float64)
    y = bias_act.bias_act(x, b, dim=1, act=act, alpha=alpha, gain=gain, clamp=clamp, impl="ref")
    def_alpha, def_gain = OFFICIAL_DEFAULTS[act]
    s = x.numpy() + b.numpy()[None, :, None]
    expect = naive_act(act, s, def_alpha if alpha is None else alpha) * (def_gain if gain is None else gain)
    if clamp is not None:
        expect = np.clip(expect, -clamp, clamp)
    np.testing.assert_allclose(y.numpy(), expect, rtol=1e-12, atol=1e-12)


def test_bias_act_bias_along_other_dim_and_no_bias():
    x = torch.randn(2, 3, 5, dtype=torch.float64)
    b = torch.randn(5, dtype=torch.float64)
    y = bias_act.bias_act(x, b, dim=2, act="relu", impl="ref")
    np.testing.assert_allclose(y.numpy(), np.maximum(x.numpy() + b.numpy(), 0) * math.sqrt(2), rtol=1e-12)
    assert torch.equal(bias_act.bias_act(x, impl="ref"), x)


def test_bias_act_rejects_bad_arguments():
    x = torch.randn(2, 3)
    with pytest.raises(ValueError, match="mish"):
        bias_act.bias_act(x, act="mish")
    with pytest.raises(ValueError, match="bias"):
        bias_act.bias_act(x, torch.zeros(4))
    with pytest.raises(ValueError, match="clamp"):
        bias_act.bias_act(x, clamp=-1)
    with pytest.raises(ValueError, match="impl"):
        bias_act.bias_act(x, impl="triton")


@pytest.mark.parametrize("act", sorted(OFFICIAL_DEFAULTS))
def test_bias_act_gradgradcheck(act):
    # Inputs at least 0.1 away from the kinks at 0; the clamp level sits in the widest gap between
    # output magnitudes, so finite differences never straddle a kink.
    sign = torch.tensor([1.0, -1.0]).repeat(12).reshape(2, 3, 4).double()
    x = ((torch.rand(2, 3, 4, dtype=torch.float64) * 0.8 + 0.1) * sign).requires_grad_(True)
    b = (torch.randn(3, dtype=torch.float64) * 0.01).requires_grad_(True)
    with torch.no_grad():
        mags = bias_act.bias_act(x, b, act=act, gain=1.3, impl="ref").abs().flatten().sort().values
        i = int((mags[1:] - mags[:-1]).argmax())
        clamp = float(mags[i] + mags[i + 1]) / 2
    fn = lambda x, b: bias_act.bias_act(x, b, act=act, gain=1.3, clamp=clamp, impl="ref")
    assert gradcheck(fn, (x, b))
    assert gradgradcheck(fn, (x, b))


# ----------------------------------------------------------------------------------------------------
# upfirdn2d


def test_setup_filter_normalises_separates_flips_and_scales():
    f = upfirdn2d.setup_filter([1, 3, 3, 1])
    np.testing.assert_allclose(f.numpy(), np.outer([1, 3, 3, 1], [1, 3, 3, 1]) / 64, rtol=1e-7)
    assert upfirdn2d.setup_filter([1] * 8).shape == (8,)  # >= 8 taps: separable by default
    assert upfirdn2d.setup_filter([1, 2], separable=True).shape == (2,)
    np.testing.assert_allclose(
        upfirdn2d.setup_filter([1, 2], flip_filter=True, normalize=False, separable=True), [2, 1]
    )
    np.testing.assert_allclose(upfirdn2d.setup_filter([1, 3, 3, 1], gain=4).sum(), 4, rtol=1e-6)
    np.testing.assert_allclose(upfirdn2d.setup_filter([1, 3, 3, 1], gain=4, separable=True).sum(), 2, rtol=1e-6)
    assert upfirdn2d.setup_filter(None).shape == (1, 1)


FILTERS = {
    "none": None,
    "binomial4_2d": upfirdn2d.setup_filter([1, 3, 3, 1]),
    "binomial3_1d": upfirdn2d.setup_filter([1, 2, 1], separable=True),
    "odd_8tap_1d": upfirdn2d.setup_filter([1, 2, 3, 4, 4, 3, 2, 1.5]),
    "random_3x4": torch.rand(3, 4, generator=torch.Generator().manual_seed(1)),  # not separable
    "rank_one_2x5": torch.outer(torch.tensor([1.0, 2.0]), torch.tensor([1.0, -1.0, 3.0, 0.5, 2.0])),
}


@pytest.mark.parametrize("fname", sorted(FILTERS))
@pytest.mark.parametrize("up,down", [(1, 1), (2, 1), (1, 2), (2, 2), ([3, 1], [1, 2])])
@pytest.mark.parametrize("padding", [0, [1, 2], [2, -1, -2, 3]])
def test_upfirdn2d_equals_naive_definition(fname, up, down, padding):
    f = FILTERS[fname]
    x = torch.randn(2, 3, 9, 10, dtype=torch.float64)
    for flip in (False, True):
        expect = naive_upfirdn2d(x.numpy(), None if f is None else f.numpy(), up, down, padding, flip, 1.5)
        y = upfirdn2d.upfirdn2d(x, f, up=up, down=down, padding=padding, flip_filter=flip, gain=1.5, impl="ref")
        assert tuple(y.shape) == expect.shape
        np.testing.assert_allclose(y.numpy(), expect, rtol=1e-6, atol=1e-6)


def test_upfirdn2d_equals_naive_definition_on_random_configurations():
    """Odd sizes, large pads and crops on either side (even beyond the data), mixed up/down factors."""
    rng = np.random.default_rng(0)
    checked = 0
    while checked < 60:
        h, w, fh, fw = rng.integers(1, 7, size=4)
        up = [int(v) for v in rng.integers(1, 4, size=2)]
        down = [int(v) for v in rng.integers(1, 4, size=2)]
        pad = [int(v) for v in rng.integers(-4, 6, size=4)]
        if w * up[0] + pad[0] + pad[1] - fw < 0 or h * up[1] + pad[2] + pad[3] - fh < 0:
            continue
        x = torch.from_numpy(rng.standard_normal([1, 2, h, w]))
        f = torch.from_numpy(rng.random([fh, fw], dtype=np.float32))
        flip = bool(rng.integers(2))
        expect = naive_upfirdn2d(x.numpy(), f.numpy(), up, down, pad, flip, 0.5)
        y = upfirdn2d.upfirdn2d(x, f, up=up, down=down, padding=pad, flip_filter=flip, gain=0.5, impl="ref")
        assert tuple(y.shape) == expect.shape, (h, w, fh, fw, up, down, pad)
        np.testing.assert_allclose(y.numpy(), expect, rtol=1e-6, atol=1e-6)
        checked += 1


@pytest.mark.parametrize("fname", ["binomial4_2d", "binomial3_1d", "random_3x4"])
def test_resampling_wrappers_follow_official_padding(fname):
    f = FILTERS[fname]
    fw = f.shape[-1]
    fh = f.shape[0]
    x = torch.randn(1, 2, 6, 7, dtype=torch.float64)
    up = upfirdn2d.upsample2d(x, f, up=2, impl="ref")
    expect = naive_upfirdn2d(
        x.numpy(), f.numpy(), up=2, padding=[(fw + 1) // 2, (fw - 2) // 2, (fh + 1) // 2, (fh - 2) // 2], gain=4
    )
    np.testing.assert_allclose(up.numpy(), expect, rtol=1e-6, atol=1e-6)
    assert up.shape[2:] == (12, 14) or fw != 4
    down = upfirdn2d.downsample2d(x, f, down=2, impl="ref")
    expect = naive_upfirdn2d(
        x.numpy(), f.numpy(), down=2, padding=[(fw - 1) // 2, (fw - 2) // 2, (fh - 1) // 2, (fh - 2) // 2]
    )
    np.testing.assert_allclose(down.numpy(), expect, rtol=1e-6, atol=1e-6)
    filt = upfirdn2d.filter2d(x, f, impl="ref")
    expect = naive_upfirdn2d(x.numpy(), f.numpy(), padding=[fw // 2, (fw - 1) // 2, fh // 2, (fh - 1) // 2])
    np.testing.assert_allclose(filt.numpy(), expect, rtol=1e-6, atol=1e-6)
    assert filt.shape == x.shape


def test_upsample2d_keeps_constant_images_constant_inside():
    f = upfirdn2d.setup_filter([1, 3, 3, 1])
    x = torch.full([1, 1, 6, 6], 2.5)
    y = upfirdn2d.upsample2d(x, f)
    assert y.shape == (1, 1, 12, 12)
    torch.testing.assert_close(y[..., 2:-2, 2:-2], torch.full_like(y[..., 2:-2, 2:-2], 2.5))


def test_upfirdn2d_rejects_bad_arguments():
    x = torch.randn(1, 1, 4, 4)
    with pytest.raises(ValueError, match="padding"):
        upfirdn2d.upfirdn2d(x, None, padding=[1, 2, 3])
    with pytest.raises(ValueError, match="float32"):
        upfirdn2d.upfirdn2d(x, torch.ones(2, 2, dtype=torch.float64))
    with pytest.raises(ValueError, match="empty"):
        upfirdn2d.upfirdn2d(x, torch.ones(3, 3), padding=-2)
    with pytest.raises(ValueError, match="N, C, H, W"):
        upfirdn2d.upfirdn2d(torch.randn(4, 4), None)


@pytest.mark.parametrize("fname", ["binomial4_2d", "binomial3_1d", "random_3x4"])
@pytest.mark.parametrize("up,down,padding", [(2, 1, [2, 1, 1, 2]), (1, 2, [1, 1, 0, 2]), (2, 2, [-1, 2, 1, 0])])
def test_upfirdn2d_gradgradcheck(fname, up, down, padding):
    f = FILTERS[fname]
    x = torch.randn(1, 2, 4, 5, dtype=torch.float64, requires_grad=True)
    fn = lambda x: upfirdn2d.upfirdn2d(x, f, up=up, down=down, padding=padding, gain=0.7, impl="ref")
    assert gradcheck(fn, (x,))
    assert gradgradcheck(fn, (x,))


# ----------------------------------------------------------------------------------------------------
# conv2d_resample


def naive_conv2d_resample(x, w, f, up, down, padding, groups, flip_weight, flip_filter):
    """The official generic definition: upsample+pad (in the upsampled grid), conv, filtered decimation."""
    fw = fh = 1
    if f is not None:
        fw, fh = f.shape[-1], f.shape[0]
    if isinstance(padding, int):
        padding = [padding] * 4
    px0, px1, py0, py1 = padding
    if up > 1:
        px0, px1 = px0 + (fw + up - 1) // 2, px1 + (fw - up) // 2
        py0, py1 = py0 + (fh + up - 1) // 2, py1 + (fh - up) // 2
    if down > 1:
        px0, px1 = px0 + (fw - down + 1) // 2, px1 + (fw - down) // 2
        py0, py1 = py0 + (fh - down + 1) // 2, py1 + (fh - down) // 2
    fn = None if f is None else f.numpy()
    z = naive_upfirdn2d(
        x.numpy(), fn if up > 1 else None, up=up, padding=[px0, px1, py0, py1], flip_filter=flip_filter, gain=up * up
    )
    z = F.conv2d(torch.from_numpy(z), w if flip_weight else w.flip([2, 3]), groups=groups).numpy()
    if down > 1:
        z = naive_upfirdn2d(z, fn, down=down, flip_filter=flip_filter)
    return z


@pytest.mark.parametrize("k", [1, 2, 3])
@pytest.mark.parametrize("up,down", [(1, 1), (2, 1), (1, 2), (2, 2)])
@pytest.mark.parametrize("groups", [1, 2])
@pytest.mark.parametrize("padding", [0, 1, [1, 0, 2, -1]])
def test_conv2d_resample_equals_generic_definition(k, up, down, groups, padding):
    f = upfirdn2d.setup_filter([1, 3, 3, 1])
    x = torch.randn(2, 4, 6, 6, dtype=torch.float64)
    w = torch.randn(6, 4 // groups, k, k, dtype=torch.float64)
    for flip_weight, flip_filter in itertools.product([True, False], [False, True]):
        expect = naive_conv2d_resample(x, w, f, up, down, padding, groups, flip_weight, flip_filter)
        y = conv2d_resample.conv2d_resample(
            x,
            w,
            f=f,
            up=up,
            down=down,
            padding=padding,
            groups=groups,
            flip_weight=flip_weight,
            flip_filter=flip_filter,
        )
        assert tuple(y.shape) == expect.shape
        np.testing.assert_allclose(y.numpy(), expect, rtol=1e-6, atol=1e-6)


def test_conv2d_resample_stylegan_layer_shapes():
    f = upfirdn2d.setup_filter([1, 3, 3, 1])
    x = torch.randn(2, 4, 8, 8)
    w = torch.randn(5, 4, 3, 3)
    assert conv2d_resample.conv2d_resample(x, w, f, up=2, padding=1).shape == (2, 5, 16, 16)
    assert conv2d_resample.conv2d_resample(x, w, f, down=2, padding=1).shape == (2, 5, 4, 4)
    assert conv2d_resample.conv2d_resample(x, w[:, :, :1, :1], f, down=2).shape == (2, 5, 4, 4)
    with pytest.raises(ValueError, match="channels"):
        conv2d_resample.conv2d_resample(x, torch.randn(5, 3, 3, 3))


def test_conv2d_resample_gradgradcheck():
    f = upfirdn2d.setup_filter([1, 3, 3, 1])
    x = torch.randn(1, 2, 4, 4, dtype=torch.float64, requires_grad=True)
    w = torch.randn(2, 2, 3, 3, dtype=torch.float64, requires_grad=True)
    for up, down in [(2, 1), (1, 2)]:
        fn = lambda x, w: conv2d_resample.conv2d_resample(x, w, f, up=up, down=down, padding=1)
        assert gradgradcheck(fn, (x, w))


# ----------------------------------------------------------------------------------------------------
# conv2d_gradfix


def test_conv2d_gradfix_matches_torch_values_and_grads():
    x = torch.randn(2, 4, 7, 7, dtype=torch.float64, requires_grad=True)
    w = torch.randn(6, 2, 3, 3, dtype=torch.float64, requires_grad=True)
    b = torch.randn(6, dtype=torch.float64, requires_grad=True)
    kw = dict(stride=2, padding=1, groups=2)
    y = conv2d_gradfix.conv2d(x, w, b, **kw)
    ref = F.conv2d(x, w, b, **kw)
    torch.testing.assert_close(y, ref)
    g = torch.randn_like(y)
    got = torch.autograd.grad(y, [x, w, b], g)
    expect = torch.autograd.grad(ref, [x, w, b], g)
    for a, e in zip(got, expect):
        torch.testing.assert_close(a, e)


@pytest.mark.parametrize("transpose", [False, True])
def test_conv2d_gradfix_gradgradcheck(transpose):
    x = torch.randn(1, 4, 5, 5, dtype=torch.float64, requires_grad=True)
    if transpose:
        w = torch.randn(4, 3, 3, 3, dtype=torch.float64, requires_grad=True)
        b = torch.randn(6, dtype=torch.float64, requires_grad=True)
        fn = lambda x, w, b: conv2d_gradfix.conv_transpose2d(x, w, b, stride=2, padding=1, output_padding=1, groups=2)
    else:
        w = torch.randn(6, 2, 3, 3, dtype=torch.float64, requires_grad=True)
        b = torch.randn(6, dtype=torch.float64, requires_grad=True)
        fn = lambda x, w, b: conv2d_gradfix.conv2d(x, w, b, stride=2, padding=1, groups=2)
    assert gradcheck(fn, (x, w, b))
    assert gradgradcheck(fn, (x, w, b))


@pytest.mark.parametrize("transpose", [False, True])
def test_no_weight_gradients_skips_weight_grad_but_keeps_double_backprop(transpose):
    """R1-style use: inner grad under the context, outer backward reaches the weights exactly."""
    x = torch.randn(2, 3, 6, 6, dtype=torch.float64, requires_grad=True)
    w = torch.randn(3, 3, 3, 3, dtype=torch.float64, requires_grad=True)
    ours = conv2d_gradfix.conv_transpose2d if transpose else conv2d_gradfix.conv2d
    theirs = F.conv_transpose2d if transpose else F.conv2d

    y = torch.tanh(ours(x, w, padding=1))
    with conv2d_gradfix.no_weight_gradients():
        y.sum().backward(retain_graph=True)
    assert w.grad is None
    assert x.grad is not None
    x.grad = None

    with conv2d_gradfix.no_weight_gradients():
        (gx,) = torch.autograd.grad(y.sum(), [x], create_graph=True)
    assert not conv2d_gradfix.weight_gradients_disabled  # the context restores the flag
    (gx.square().sum()).backward()

    x2 = x.detach().clone().requires_grad_(True)
    w2 = w.detach().clone().requires_grad_(True)
    y2 = torch.tanh(theirs(x2, w2, padding=1))
    (gx2,) = torch.autograd.grad(y2.sum(), [x2], create_graph=True)
    torch.testing.assert_close(gx, gx2)
    gx2.square().sum().backward()
    torch.testing.assert_close(w.grad, w2.grad)
    torch.testing.assert_close(x.grad, x2.grad)


# ----------------------------------------------------------------------------------------------------
# fma, grid_sample


def test_fma_broadcasts_and_reduces_gradients():
    a = torch.randn(3, 1, 4, dtype=torch.float64, requires_grad=True)
    b = torch.randn(1, 5, 1, dtype=torch.float64, requires_grad=True)
    c = torch.randn(4, dtype=torch.float64, requires_grad=True)
    torch.testing.assert_close(fma.fma(a, b, c), a * b + c)
    assert gradgradcheck(fma.fma, (a, b, c))


def naive_grid_sample(img, grid):
    """Bilinear, zeros outside, align_corners=False, by explicit loops."""
    n, c, h, w = img.shape
    _, ho, wo, _ = grid.shape
    out = np.zeros([n, c, ho, wo])
    for b_ in range(n):
        for i in range(ho):
            for j in range(wo):
                gx, gy = grid[b_, i, j]
                ix = ((gx + 1) * w - 1) / 2
                iy = ((gy + 1) * h - 1) / 2
                x0, y0 = int(np.floor(ix)), int(np.floor(iy))
                for yy, xx in [(y0, x0), (y0, x0 + 1), (y0 + 1, x0), (y0 + 1, x0 + 1)]:
                    wt = (1 - abs(ix - xx)) * (1 - abs(iy - yy))
                    if 0 <= yy < h and 0 <= xx < w:
                        out[b_, :, i, j] += wt * img[b_, :, yy, xx]
    return out


def test_grid_sample_equals_bilinear_formula():
    img = torch.randn(2, 3, 5, 4, dtype=torch.float64)
    grid = torch.rand(2, 3, 6, 2, dtype=torch.float64) * 2.4 - 1.2  # includes samples outside the image
    y = grid_sample_gradfix.grid_sample(img, grid)
    np.testing.assert_allclose(y.numpy(), naive_grid_sample(img.numpy(), grid.numpy()), rtol=1e-10, atol=1e-12)


def test_grid_sample_gradgradcheck():
    img = torch.randn(1, 2, 4, 5, dtype=torch.float64, requires_grad=True)
    grid = (torch.rand(1, 3, 3, 2, dtype=torch.float64) * 1.8 - 0.9).requires_grad_(True)
    assert gradgradcheck(grid_sample_gradfix.grid_sample, (img, grid))
    with pytest.raises(ValueError, match="grid"):
        grid_sample_gradfix.grid_sample(img, grid[..., :1])
