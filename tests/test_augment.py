"""AugmentPipe (ADA) and the adaptive-p controller: exact oracles for the simple cases, properties otherwise."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.stats import norm

from training.augment import AUGPIPE_SPECS, WAVELETS, AdaController, AugmentPipe, filter_delay, octave_filter_bank

RESAMPLED = {"geom", "bg", "bgc", "bgcf", "bgcfn", "bgcfnc"}  # presets that go through the wavelet resampler


def _images(n=4, c=3, res=16, seed=0):
    return torch.randn([n, c, res, res], generator=torch.Generator().manual_seed(seed))


def _smooth_images(n=2, c=3, res=32, seed=0):
    coarse = torch.randn([n, c, 6, 6], generator=torch.Generator().manual_seed(seed))
    return F.interpolate(coarse, size=(res, res), mode="bicubic", align_corners=False)


def _pipe(p=1.0, **kwargs):
    pipe = AugmentPipe(**kwargs)
    pipe.p.fill_(p)
    return pipe


# ---------------------------------------------------------------- official layout


def test_presets_are_the_official_ones():
    blit, geom = dict(xflip=1, rotate90=1, xint=1), dict(scale=1, rotate=1, aniso=1, xfrac=1)
    color = dict(brightness=1, contrast=1, lumaflip=1, hue=1, saturation=1)
    assert AUGPIPE_SPECS["blit"] == blit and AUGPIPE_SPECS["geom"] == geom and AUGPIPE_SPECS["color"] == color
    assert AUGPIPE_SPECS["bgc"] == {**blit, **geom, **color}
    assert AUGPIPE_SPECS["bgcfnc"] == {**blit, **geom, **color, "imgfilter": 1, "noise": 1, "cutout": 1}
    assert set(AUGPIPE_SPECS) == {
        "blit",
        "geom",
        "color",
        "filter",
        "noise",
        "cutout",
        "bg",
        "bgc",
        "bgcf",
        "bgcfn",
        "bgcfnc",
    }


def test_state_dict_has_the_official_buffers():
    state = AugmentPipe(**AUGPIPE_SPECS["bgc"]).state_dict()
    assert list(state) == ["p", "Hz_geom", "Hz_fbank"]
    assert state["p"].shape == () and float(state["p"]) == 1
    assert state["Hz_geom"].shape == (12,) and state["Hz_fbank"].shape == (4, 43)
    assert torch.allclose(state["Hz_geom"], torch.tensor(WAVELETS["sym6"]) / np.sqrt(2), atol=1e-7)


def test_official_state_loads_and_kwargs_round_trip():
    source = _pipe(p=0.37, **AUGPIPE_SPECS["bgcfnc"])
    target = AugmentPipe(**source.init_kwargs)
    target.load_state_dict(source.state_dict(), strict=True)
    assert float(target.p) == pytest.approx(0.37)
    assert target.init_kwargs == source.init_kwargs and target.init_kwargs["imgfilter_bands"] == [1, 1, 1, 1]


@pytest.mark.parametrize(
    "kwargs, match",
    [(dict(xflip=-1), "xflip"), (dict(imgfilter_bands=[1, 1]), "imgfilter_bands"), (dict(hue="1"), "hue")],
)
def test_bad_kwargs_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        AugmentPipe(**kwargs)


# ---------------------------------------------------------------- filters


@pytest.mark.parametrize("name, vanishing_moments", [("sym2", 2), ("sym6", 6)])
def test_wavelet_taps_are_orthonormal_with_vanishing_moments(name, vanishing_moments):
    h = np.asarray(WAVELETS[name])
    assert h.sum() == pytest.approx(np.sqrt(2), abs=1e-12)
    autocorr = np.correlate(h, h, "full")[h.size - 1 :: 2]  # even lags 0, 2, 4, ...
    assert np.allclose(autocorr, np.eye(1, autocorr.size)[0], atol=1e-11)
    k = np.arange(h.size)
    for m in range(vanishing_moments):
        assert abs(((-1.0) ** k * k**m * h).sum()) < 1e-7 * max(1, (k**m).max())


def test_filter_bank_splits_the_spectrum_into_octaves():
    bank = octave_filter_bank(WAVELETS["sym2"])
    impulse = np.zeros(bank.shape[1])
    impulse[bank.shape[1] // 2] = 1
    assert np.allclose(bank.sum(axis=0), impulse, atol=1e-10)  # unit gains leave images unchanged
    assert np.allclose(bank, bank[:, ::-1], atol=1e-12)  # zero phase
    response = np.abs(np.fft.rfft(bank, n=1024, axis=1))  # [band, frequency 0..pi]
    freqs = np.linspace(0, np.pi, response.shape[1])
    for band, (lo, hi) in enumerate(
        [(0, np.pi / 8), (np.pi / 8, np.pi / 4), (np.pi / 4, np.pi / 2), (np.pi / 2, np.pi)]
    ):
        centre = np.argmin(np.abs(freqs - (lo + hi) / 2))
        assert np.argmax(response[:, centre]) == band
    assert response[0, 0] == pytest.approx(1) and response[3, -1] == pytest.approx(1)


def test_filter_delay_is_the_centre_of_mass_offset():
    assert filter_delay(torch.tensor([1.0, 2.0, 1.0])) == pytest.approx(0)
    assert filter_delay(torch.tensor([0.0, 1.0, 0.0, 0.0])) == pytest.approx(0.5)


# ---------------------------------------------------------------- p = 0 and p = 1


@pytest.mark.parametrize("spec", sorted(AUGPIPE_SPECS))
def test_zero_p_is_identity(spec):
    x = _images()
    y = _pipe(p=0, **AUGPIPE_SPECS[spec])(x)
    if spec in RESAMPLED or spec in ("filter",):  # wavelet up/down-sampling round trip: identity up to rounding
        assert torch.allclose(y, x, atol=2e-5)
    else:
        assert torch.equal(y, x)


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("spec", sorted(AUGPIPE_SPECS))
def test_full_strength_is_finite_and_changes_images(spec, channels):
    x = _images(c=channels)
    y = _pipe(p=1, **AUGPIPE_SPECS[spec])(x)
    assert y.shape == x.shape and y.dtype == x.dtype and torch.isfinite(y).all()
    assert (y - x).abs().mean() > 1e-3


def test_debug_percentile_is_deterministic():
    pipe = _pipe(**AUGPIPE_SPECS["bgcf"])  # noise pixels stay random by design
    x = _images()
    a, b = pipe(x, debug_percentile=0.3), pipe(x, debug_percentile=0.3)
    assert torch.allclose(a, b) and not torch.allclose(a, pipe(x, debug_percentile=0.6))


# ---------------------------------------------------------------- blit: exact permutations


def test_xflip_is_an_exact_mirror():
    x = _images(n=32)
    y = _pipe(xflip=1)(x)
    flipped = [torch.equal(y[i], x[i].flip(2)) for i in range(32)]
    kept = [torch.equal(y[i], x[i]) for i in range(32)]
    assert all(f != k for f, k in zip(flipped, kept)) and 4 < sum(flipped) < 28


def test_rotate90_is_an_exact_quarter_turn():
    x = _images(n=32)
    y = _pipe(rotate90=1)(x)
    turns = [[k for k in range(4) if torch.equal(y[i], torch.rot90(x[i], k, [1, 2]))] for i in range(32)]
    assert all(len(t) == 1 for t in turns) and {t[0] for t in turns} == {0, 1, 2, 3}


def test_xint_shifts_by_whole_pixels_with_mirrored_borders():
    x = _images()
    shift = round(0.125 * 16)  # debug_percentile=1 draws the largest shift, xint_max * size
    y = _pipe(xint=1)(x, debug_percentile=1.0)
    assert torch.equal(y, F.pad(x, [shift, 0, shift, 0], mode="reflect")[..., :16, :16])


def test_resampler_reproduces_integer_shifts():
    x = _images()
    shift = round(0.125 * 16)
    y = _pipe(xint=1, xfrac=1, xfrac_std=0)(x, debug_percentile=1.0)  # xfrac forces the general resampler
    assert torch.allclose(y, F.pad(x, [shift, 0, shift, 0], mode="reflect")[..., :16, :16], atol=1e-5)


def test_resampler_rotates_smooth_images_accurately():
    x = _smooth_images()
    half_turn = _pipe(rotate=1)(x, debug_percentile=0.75)  # two rotations of pi/2 each
    assert (half_turn - x.flip([2, 3])).abs().mean() < 0.01
    quarter = _pipe(rotate=1)(x, debug_percentile=0.625)  # two rotations of pi/4
    assert min((quarter - torch.rot90(x, k, [2, 3])).abs().mean() for k in (1, 3)) < 0.01


def test_resampler_scales_about_the_centre():
    x = _smooth_images(c=1)
    q = norm.cdf(1 / 0.2)  # normal quantile 5 -> scale 2 ** (5 * 0.2) = 2
    y = _pipe(scale=1)(x, debug_percentile=q)
    zoom = F.interpolate(x, scale_factor=2, mode="bicubic", align_corners=False)
    error = [(y - zoom[..., 16 + s : 48 + s, 16 + s : 48 + s])[..., 4:-4, 4:-4].abs().mean() for s in (-1, 0, 1)]
    assert error[1] < 0.05 and error[1] * 3 < min(error[0], error[2])  # centred: a 1-pixel offset is far worse


# ---------------------------------------------------------------- colour, filter, noise, cutout


def test_brightness_adds_the_drawn_offset():
    x = _images()
    y = _pipe(brightness=1)(x, debug_percentile=0.8)
    assert torch.allclose(y, x + norm.ppf(0.8) * 0.2, atol=1e-5)


def test_contrast_scales_about_zero():
    x = _images(c=1)
    y = _pipe(contrast=1)(x, debug_percentile=0.8)
    assert torch.allclose(y, x * 2 ** (norm.ppf(0.8) * 0.5), atol=1e-5)


def test_lumaflip_negates_luma_and_keeps_chroma():
    x = _images()
    y = _pipe(lumaflip=1)(x, debug_percentile=0.75)  # floor(0.75 * 2) = 1: flip
    assert torch.allclose(y.mean(dim=1), -x.mean(dim=1), atol=1e-5)
    assert torch.allclose(y - y.mean(dim=1, keepdim=True), x - x.mean(dim=1, keepdim=True), atol=1e-5)


def test_hue_rotation_keeps_luma_and_saturation_scales_chroma():
    x = _images()
    y = _pipe(hue=1)(x, debug_percentile=0.7)
    chroma = lambda t: t - t.mean(dim=1, keepdim=True)  # noqa: E731
    assert torch.allclose(y.mean(dim=1), x.mean(dim=1), atol=1e-5)
    assert torch.allclose(chroma(y).norm(dim=1), chroma(x).norm(dim=1), atol=1e-4)
    assert not torch.allclose(y, x, atol=1e-2)
    s = 2 ** norm.ppf(0.7)
    z = _pipe(saturation=1)(x, debug_percentile=0.7)
    assert torch.allclose(z.mean(dim=1), x.mean(dim=1), atol=1e-5)
    assert torch.allclose(chroma(z), chroma(x) * s, atol=1e-4)


def test_imgfilter_scales_bands_with_power_normalisation():
    t = 2 ** norm.ppf(0.9)  # gain drawn for the top band; the other bands keep gain 1
    norm_factor = np.sqrt((10 + 1 + 1 + t**2) / 13)
    pipe = _pipe(imgfilter=1, imgfilter_bands=[0, 0, 0, 1])
    flat = torch.full([1, 1, 16, 16], 0.5)
    # the 1-D band filter runs along x and then y, so a 2-D frequency in bands (i, j) gets gain g_i * g_j
    assert torch.allclose(pipe(flat, debug_percentile=0.9), flat / norm_factor**2, atol=1e-5)
    checker = (torch.arange(16)[:, None] + torch.arange(16)[None, :]).remainder(2).float().mul(2).sub(1)[None, None]
    assert torch.allclose(pipe(checker, debug_percentile=0.9), checker * (t / norm_factor) ** 2, atol=1e-4)


def test_noise_has_the_drawn_standard_deviation():
    x = torch.zeros([2, 3, 64, 64])
    y = _pipe(noise=1)(x, debug_percentile=0.8)
    assert y.std().item() == pytest.approx(abs(norm.ppf(0.8)) * 0.1, rel=0.05)


def test_cutout_zeroes_the_centred_square():
    x = _images()
    y = _pipe(cutout=1)(x, debug_percentile=0.5)  # centre (0.5, 0.5), side cutout_size = half the image
    expected = x.clone()
    expected[:, :, 4:12, 4:12] = 0
    assert torch.equal(y, expected)


# ---------------------------------------------------------------- gradients


def test_gradients_reach_the_input_through_every_augmentation():
    x = _images().requires_grad_(True)
    y = _pipe(**AUGPIPE_SPECS["bgcfnc"])(x)
    (y * torch.randn_like(y)).sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_geom_pipe_gradients_match_finite_differences_and_double_backward():
    pipe = _pipe(**AUGPIPE_SPECS["bg"])  # float32 filters (as upfirdn2d requires), float64 images
    x = torch.randn([1, 1, 8, 8], dtype=torch.float64, requires_grad=True)

    def fixed_draws(images):
        torch.manual_seed(3)
        return pipe(images)

    assert torch.autograd.gradcheck(fixed_draws, (x,), eps=1e-6, atol=1e-5)
    assert torch.autograd.gradgradcheck(fixed_draws, (x,), eps=1e-6, atol=1e-5)


def test_r1_style_double_backward_through_bgc():
    w = torch.randn([1, 3, 3, 3], requires_grad=True)
    x = _images().requires_grad_(True)
    logits = F.conv2d(torch.tanh(_pipe(**AUGPIPE_SPECS["bgc"])(x)), w).square().sum()
    (grad,) = torch.autograd.grad(logits, x, create_graph=True)
    grad.square().sum().backward()
    assert torch.isfinite(w.grad).all() and w.grad.abs().sum() > 0


# ---------------------------------------------------------------- adaptive p


def test_ada_raises_p_when_real_logits_are_too_positive():
    pipe = AugmentPipe(**AUGPIPE_SPECS["bgc"])
    ada = AdaController(pipe, batch_size=32, target=0.6, interval=4, kimg=500)
    assert ada.p == 0
    step = 32 * 4 / (500 * 1000)
    for i in range(8):
        ada.observe(torch.tensor([[1.0], [2.0], [0.5], [-1.0]]))  # r_t = 0.5 < 0.6 on its own
        ada.observe(torch.ones([4, 1]))  # together r_t = 0.75 > 0.6
        rt = ada.step()
        assert (rt is None) == (i % 4 != 3)
    assert ada.last_rt == pytest.approx(0.75) and ada.p == pytest.approx(2 * step)


def test_ada_lowers_p_and_clamps_at_zero():
    pipe = AugmentPipe(xflip=1)
    ada = AdaController(pipe, batch_size=64, target=0.6, p=0.003, interval=2, kimg=100)
    step = 64 * 2 / (100 * 1000)
    for _ in range(2):
        ada.observe(torch.tensor([1.0, -1.0, 1.0, 1.0]))  # r_t = 0.5 < 0.6
        ada.step()
    assert ada.p == pytest.approx(0.003 - step)
    for _ in range(6):
        ada.observe(-torch.ones([4]))
        ada.step()
    assert ada.p == 0


def test_fixed_p_never_moves_and_state_round_trips():
    pipe = AugmentPipe(xflip=1)
    fixed = AdaController(pipe, batch_size=8, target=None, p=0.25)
    for _ in range(8):
        fixed.observe(torch.ones([8]))
        assert fixed.step() is None
    assert fixed.p == 0.25
    ada = AdaController(pipe, batch_size=8, target=0.6)
    ada.observe(torch.ones([8]))
    ada.step()
    clone = AdaController(AugmentPipe(xflip=1), batch_size=8, target=0.6)
    clone.load_state_dict(ada.state_dict())
    for controller in (ada, clone):
        for _ in range(3):
            controller.observe(torch.ones([8]))
            controller.step()
    assert clone.p == ada.p > 0 and clone.last_rt == ada.last_rt == 1
    with pytest.raises(ValueError, match="target"):
        AdaController(pipe, batch_size=8, target=1.5)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("spec", ["bgcf", "blit", "cutout"])
def test_cuda_matches_cpu_at_fixed_percentile(spec):
    x = _images()
    pipe = _pipe(**AUGPIPE_SPECS[spec])
    expected = pipe(x, debug_percentile=0.3)
    actual = pipe.cuda()(x.cuda(), debug_percentile=0.3).cpu()
    assert torch.allclose(actual, expected, atol=1e-4)
    ada = AdaController(pipe, batch_size=4, target=0.6, interval=1)
    ada.observe(torch.ones([4, 1], device="cuda"))
    assert ada.step() == 1 and ada.p > 0
