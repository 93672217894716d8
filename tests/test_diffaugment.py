"""DiffAugment (Zhao et al. 2020): each op against a hand-written oracle, the random draws' ranges, per-sample
randomness from torch's RNG, first- and second-order gradients, and the policy parser."""

import json

import pytest
import torch

from training.diffaugment import (
    DEFAULT_POLICY,
    DIFFAUG_POLICIES,
    DiffAugment,
    adjust_brightness,
    adjust_contrast,
    adjust_saturation,
    cutout,
    cutout_size,
    max_shift,
    parse_policy,
    random_brightness,
    random_contrast,
    random_cutout,
    random_saturation,
    random_translation,
    translate,
)
from training.loss import StyleGAN2Loss
from training.networks import Discriminator, Generator
from training.options import LossOptions

POLICIES = ["color", "translation", "cutout", DEFAULT_POLICY]


def _images(n=4, c=3, h=16, w=None, seed=0, dtype=torch.float32):
    return torch.randn([n, c, h, w or h], generator=torch.Generator().manual_seed(seed), dtype=dtype)


def _distinct(n=4, c=3, h=16, w=None):
    """Positive, pairwise distinct pixel values, so a zero can only come from padding or the cut."""
    w = w or h
    return torch.arange(1, n * c * h * w + 1, dtype=torch.float64).reshape(n, c, h, w)


def _seeded(fn, seed=123):
    """fn with its random draws fixed: torch's RNG is re-seeded before every call."""

    def call(*args):
        torch.manual_seed(seed)
        return fn(*args)

    return call


# ---------------------------------------------------------------- oracles, written independently of the module


def _shift_oracle(x, dy, dx):
    """One image [C, H, W] shifted so out[i, j] = x[i + dy, j + dx]: torch.roll, then zero what wrapped."""
    out = torch.roll(x, shifts=(-dy, -dx), dims=(1, 2)).clone()
    h, w = x.shape[1:]
    if dy > 0:
        out[:, max(h - dy, 0) :] = 0
    elif dy < 0:
        out[:, : min(-dy, h)] = 0
    if dx > 0:
        out[:, :, max(w - dx, 0) :] = 0
    elif dx < 0:
        out[:, :, : min(-dx, w)] = 0
    return out


def _cut_oracle(x, top, left, size_y, size_x):
    """One image [C, H, W] with rows top..top+size_y-1, columns left..left+size_x-1 (clipped) set to 0."""
    out = x.clone()
    out[:, max(top, 0) : max(top + size_y, 0), max(left, 0) : max(left + size_x, 0)] = 0
    return out


# ---------------------------------------------------------------- the policy names and the parser


def test_registry_holds_the_papers_three_policies_and_the_default_uses_all():
    assert list(DIFFAUG_POLICIES) == ["color", "translation", "cutout"]
    assert parse_policy(DEFAULT_POLICY) == ("color", "translation", "cutout")
    assert DiffAugment().policy == ("color", "translation", "cutout")
    assert [op.__name__ for op in DIFFAUG_POLICIES["color"]] == [
        "random_brightness",
        "random_saturation",
        "random_contrast",
    ]


def test_parse_keeps_the_given_order_and_strips_spaces():
    assert parse_policy(" cutout , color") == ("cutout", "color")
    assert parse_policy(["translation", "color"]) == ("translation", "color")
    for empty in ["", "none", " none ", None, []]:
        assert parse_policy(empty) == ()


@pytest.mark.parametrize(
    "policy, match",
    [
        ("colour", r"unknown name 'colour'.*valid names: color, translation, cutout"),
        ("color,Translation", r"unknown name 'Translation'.*color, translation, cutout"),
        ("color,,cutout", r"an empty name.*valid names"),
        ("color,none", r"unknown name 'none'"),
        ("cutout,color,cutout", r"lists cutout more than once"),
    ],
)
def test_invalid_policies_are_named_with_the_valid_ones(policy, match):
    with pytest.raises(ValueError, match=match):
        parse_policy(policy)
    with pytest.raises(ValueError, match=match):
        DiffAugment(policy)


@pytest.mark.parametrize("bad", [torch.zeros(3, 8, 8), torch.zeros(2, 3, 8, 8, dtype=torch.uint8), "x"])
def test_non_image_input_is_refused(bad):
    with pytest.raises(ValueError, match=r"float images \[N, C, H, W\]"):
        DiffAugment()(bad)


def test_module_is_stateless_and_rebuilds_from_json_kwargs():
    aug = DiffAugment("cutout, color")
    assert aug.state_dict() == {} and list(aug.parameters()) == []
    rebuilt = DiffAugment(**json.loads(json.dumps(aug.init_kwargs)))
    assert rebuilt.policy == ("cutout", "color") and aug.init_kwargs == {"policy": "cutout,color"}
    assert DiffAugment("").init_kwargs == {"policy": "none"} and DiffAugment("none").policy == ()
    assert "policy='cutout,color'" in repr(aug)


# ---------------------------------------------------------------- identity, shapes, dtypes


@pytest.mark.parametrize("policy", ["", "none"])
def test_empty_policy_returns_the_input_tensor_and_draws_nothing(policy):
    x = _images()
    state = torch.get_rng_state()
    assert DiffAugment(policy)(x) is x
    assert torch.equal(torch.get_rng_state(), state)


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("c, res, n", [(1, 16, 1), (3, 16, 5), (1, 32, 3), (3, 32, 7)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_shape_dtype_and_device_are_preserved(policy, c, res, n, dtype):
    x = _images(n, c, res, dtype=dtype)
    y = DiffAugment(policy)(x)
    assert y.shape == x.shape and y.dtype == dtype and y.device == x.device
    assert torch.isfinite(y).all() and not torch.equal(y, x)


def test_non_square_images_use_each_axis_own_size():
    assert (max_shift(16), max_shift(32), max_shift(8), max_shift(20), max_shift(256)) == (2, 4, 1, 3, 32)
    assert (cutout_size(16), cutout_size(32), cutout_size(9), cutout_size(256)) == (8, 16, 5, 128)
    torch.manual_seed(1)
    y = random_cutout(torch.ones(400, 1, 8, 32))
    cut_rows = (y == 0).any(dim=3).sum(dim=2)  # [N, 1]: rows touched by the cut
    cut_cols = (y == 0).any(dim=2).sum(dim=2)
    assert cut_rows.max() == 4 and cut_cols.max() == 16


# ---------------------------------------------------------------- each op against its oracle


def test_brightness_adds_one_constant_per_sample():
    x = _images(3)
    delta = torch.tensor([0.25, -0.5, 0.0])
    y = adjust_brightness(x, delta)
    for i in range(3):
        assert torch.allclose(y[i], x[i] + delta[i])


def test_saturation_scales_the_deviation_from_the_channel_mean():
    x = _images(3, c=3, h=4, dtype=torch.float64)
    factor = torch.tensor([0.0, 1.0, 1.7], dtype=torch.float64)
    y = adjust_saturation(x, factor)
    grey = (x[:, 0] + x[:, 1] + x[:, 2]) / 3
    for i in range(3):
        expected = grey[i] + factor[i] * (x[i] - grey[i])
        assert torch.allclose(y[i], expected, atol=1e-12)
    assert torch.allclose(y[0], grey[0].expand(3, 4, 4), atol=1e-12)  # factor 0: every channel equal


def test_saturation_is_the_identity_on_one_channel():
    x = _images(5, c=1)
    assert torch.equal(adjust_saturation(x, torch.full([5], 1.9)), x)
    torch.manual_seed(0)
    assert torch.equal(random_saturation(x), x)


def test_contrast_scales_the_deviation_from_the_image_mean():
    x = _images(2, c=3, h=4, dtype=torch.float64)
    factor = torch.tensor([0.5, 1.5], dtype=torch.float64)
    y = adjust_contrast(x, factor)
    for i in range(2):
        mean = x[i].sum() / x[i].numel()
        assert torch.allclose(y[i], mean + factor[i] * (x[i] - mean), atol=1e-12)
        assert torch.allclose(y[i].mean(), mean, atol=1e-12)  # contrast keeps the mean


@pytest.mark.parametrize("dy, dx", [(0, 0), (1, 0), (0, -2), (2, 1), (-1, -1), (-3, 2), (5, 0), (0, -7), (9, 9)])
def test_translation_equals_roll_with_the_wrapped_border_zeroed(dy, dx):
    x = _distinct(n=1, c=2, h=5, w=7)[0]
    y = translate(x[None], torch.tensor([dy]), torch.tensor([dx]))[0]
    assert torch.equal(y, _shift_oracle(x, dy, dx))


def test_translation_shifts_each_sample_by_its_own_amount():
    x = _distinct(n=4, c=3, h=6)
    sy, sx = torch.tensor([1, -2, 0, 3]), torch.tensor([0, 2, -1, -3])
    y = translate(x, sy, sx)
    for i in range(4):
        assert torch.equal(y[i], _shift_oracle(x[i], int(sy[i]), int(sx[i])))


@pytest.mark.parametrize("top, left, size", [(2, 3, 4), (0, 0, 8), (-2, 5, 4), (6, -3, 4), (7, 7, 3), (-9, 0, 4)])
def test_cutout_zeroes_exactly_the_clipped_square(top, left, size):
    x = _distinct(n=1, c=3, h=8)[0]
    y = cutout(x[None], torch.tensor([top]), torch.tensor([left]), size, size)[0]
    assert torch.equal(y, _cut_oracle(x, top, left, size, size))
    inside_rows = max(0, min(top + size, 8) - max(top, 0))
    inside_cols = max(0, min(left + size, 8) - max(left, 0))
    assert int((y == 0).sum()) == 3 * inside_rows * inside_cols


# ---------------------------------------------------------------- the random draws: ranges and per-sample randomness


def _per_sample_factor(x, y, centre):
    """The scalar k with y - centre = k (x - centre) for each sample, asserting it is one constant per sample."""
    num, den = (y - centre).flatten(1), (x - centre).flatten(1)
    k = (num * den).sum(1) / (den * den).sum(1)
    assert torch.allclose(num, k[:, None] * den, atol=1e-9)
    return k


def test_random_brightness_is_uniform_on_minus_half_to_half_per_sample():
    x = _images(2000, c=3, h=4, dtype=torch.float64)
    delta = (random_brightness(x) - x).flatten(1)
    assert torch.allclose(delta, delta[:, :1].expand_as(delta), atol=1e-12)  # one constant per sample
    delta = delta[:, 0]
    assert delta.min() >= -0.5 and delta.max() < 0.5 and delta.min() < -0.49 and delta.max() > 0.49
    assert abs(float(delta.mean())) < 0.03 and delta.unique().numel() == 2000


def test_random_saturation_factor_is_uniform_on_zero_to_two_per_sample():
    x = _images(2000, c=3, h=4, dtype=torch.float64)
    k = _per_sample_factor(x, random_saturation(x), x.mean(dim=1, keepdim=True))
    assert k.min() >= 0 and k.max() < 2 and k.min() < 0.01 and k.max() > 1.99 and abs(float(k.mean()) - 1) < 0.05


def test_random_contrast_factor_is_uniform_on_half_to_one_and_a_half_per_sample():
    x = _images(2000, c=3, h=4, dtype=torch.float64)
    k = _per_sample_factor(x, random_contrast(x), x.mean(dim=[1, 2, 3], keepdim=True))
    assert k.min() >= 0.5 and k.max() < 1.5 and k.min() < 0.51 and k.max() > 1.49


@pytest.mark.parametrize("res", [16, 32])
def test_random_translation_draws_every_integer_shift_up_to_an_eighth_per_sample(res):
    n, r = 300, res // 8
    x = _distinct(n=n, c=1, h=res)
    y = random_translation(x)
    found = []
    for i in range(n):  # recover each sample's shift by trying every candidate against the oracle
        matches = [
            (dy, dx)
            for dy in range(-r - 1, r + 2)
            for dx in range(-r - 1, r + 2)
            if torch.equal(y[i], _shift_oracle(x[i], dy, dx))
        ]
        assert len(matches) == 1, f"sample {i}: {matches}"
        found.append(matches[0])
    dys, dxs = {d[0] for d in found}, {d[1] for d in found}
    assert dys == set(range(-r, r + 1)) and dxs == set(range(-r, r + 1))
    assert len(set(found)) > (2 * r + 1) ** 2 // 2  # the two axes are drawn independently


@pytest.mark.parametrize("res", [16, 32, 18])
def test_random_cutout_is_a_half_size_square_centred_anywhere(res):
    n, size = 600, cutout_size(res)
    y = random_cutout(torch.ones(n, 2, res, res))
    assert torch.equal(y[:, 0], y[:, 1])  # the same square on every channel
    rows, cols = (y[:, 0] == 0).any(dim=2), (y[:, 0] == 0).any(dim=1)  # [N, H], [N, W]
    tops, bottoms, interior = [], [], 0
    for i in range(n):
        r, c = rows[i].nonzero().flatten(), cols[i].nonzero().flatten()
        assert r.numel() > 0 and c.numel() > 0  # the centre is inside the image, so something is always cut
        top = int(r[-1]) - size + 1 if int(r[0]) == 0 else int(r[0])  # a square clipped at the top edge
        left = int(c[-1]) - size + 1 if int(c[0]) == 0 else int(c[0])
        assert torch.equal(y[i, 0], _cut_oracle(torch.ones(1, res, res), top, left, size, size)[0])
        tops.append(top)
        bottoms.append(int(r[-1]))
        if 0 <= min(top, left) and max(top, left) + size <= res:  # wholly inside: exactly size x size pixels
            interior += 1
            assert int((y[i, 0] == 0).sum()) == size * size
    assert interior > n // 10
    # Centres cover the whole image: some squares are clipped at each border, some touch none.
    assert min(tops) < 0 and max(bottoms) == res - 1 and max(tops) + size > res
    assert len(set(tops)) >= res - 1


@pytest.mark.parametrize("policy", POLICIES)
def test_samples_of_one_batch_get_different_draws(policy):
    n = 16
    x = _images(1, c=3, h=32).expand(n, 3, 32, 32).contiguous()  # one image, sixteen times
    y = DiffAugment(policy)(x)
    distinct = len({tuple(y[i].flatten().tolist()) for i in range(n)})
    # A draw shared by the batch would give 1 distinct image. Colour draws are continuous, so all differ; of the
    # 81 shifts (1089 cutout centres) at 32 px, 16 independent draws give ~14.6 (~15.9) distinct ones.
    assert distinct == n if "color" in policy else distinct > n // 2


@pytest.mark.parametrize("policy", POLICIES)
def test_the_same_seed_gives_the_same_output_and_another_seed_another(policy):
    x, aug = _images(6), DiffAugment(policy)
    torch.manual_seed(7)
    a = aug(x)
    torch.manual_seed(7)
    b = aug(x)
    torch.manual_seed(8)
    c = aug(x)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_draws_come_from_torchs_rng_so_a_captured_state_replays_them():
    x, aug = _images(6), DiffAugment()
    state = torch.get_rng_state()
    a = aug(x)
    assert not torch.equal(torch.get_rng_state(), state)  # the global generator advanced: no private one
    torch.set_rng_state(state)
    assert torch.equal(aug(x), a)


def test_default_policy_is_the_documented_sequence_of_draws():
    """The module docstring's contract: brightness, saturation, contrast, dy, dx, cutout centre y, x."""
    n, res = 5, 16
    x = _images(n, c=3, h=res)
    torch.manual_seed(3)
    b, s, k = torch.rand(n) - 0.5, torch.rand(n) * 2, torch.rand(n) + 0.5
    dy, dx = torch.randint(-2, 3, [n]), torch.randint(-2, 3, [n])
    cy, cx = torch.randint(0, res + 1, [n]), torch.randint(0, res + 1, [n])
    expected = []
    for i in range(n):
        img = x[i] + b[i]
        grey = img.mean(dim=0, keepdim=True)
        img = grey + s[i] * (img - grey)
        mean = img.mean()
        img = mean + k[i] * (img - mean)
        img = _shift_oracle(img, int(dy[i]), int(dx[i]))
        expected.append(_cut_oracle(img, int(cy[i]) - 4, int(cx[i]) - 4, 8, 8))
    torch.manual_seed(3)
    assert torch.allclose(DiffAugment()(x), torch.stack(expected), atol=1e-6)


# ---------------------------------------------------------------- gradients: first order, second order (R1)


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("c", [1, 3])
def test_gradients_match_finite_differences(policy, c):
    x = _images(3, c=c, h=8, dtype=torch.float64).requires_grad_(True)
    assert torch.autograd.gradcheck(_seeded(DiffAugment(policy)), (x,), eps=1e-6, atol=1e-7)


@pytest.mark.parametrize("policy", POLICIES)
def test_second_order_gradients_match_finite_differences(policy):
    x = _images(2, c=3, h=6, dtype=torch.float64).requires_grad_(True)  # 6 px: shifts of +-1, a 3 px cut
    aug = _seeded(DiffAugment(policy))
    # A nonlinear head, so the second derivative is not trivially zero.
    assert torch.autograd.gradgradcheck(
        lambda t: torch.tanh(aug(t)) ** 2, (x,), eps=1e-6, atol=1e-6, fast_mode=True
    )  # random projections of the full Hessian check


def test_r1_penalty_through_the_augmentation_has_the_finite_difference_gradient():
    gen = torch.Generator().manual_seed(0)
    weight = torch.randn([4, 3, 3, 3], generator=gen, dtype=torch.float64)
    aug = _seeded(DiffAugment())

    def r1(x):
        x = x.detach().requires_grad_(True)
        logits = torch.nn.functional.conv2d(aug(x), weight, padding=1).tanh().sum()
        (grad,) = torch.autograd.grad(logits, x, create_graph=True)
        return grad.square().sum(), x

    x0 = _images(2, c=3, h=8, dtype=torch.float64)
    penalty, x = r1(x0)
    penalty.backward()
    direction = torch.randn(x0.shape, generator=gen, dtype=torch.float64)
    eps = 1e-5
    numeric = (r1(x0 + eps * direction)[0] - r1(x0 - eps * direction)[0]) / (2 * eps)
    assert float(x.grad.abs().sum()) > 0
    assert torch.allclose((x.grad * direction).sum(), numeric.detach(), rtol=1e-5, atol=1e-8)


def test_cut_and_shifted_out_pixels_get_no_gradient_and_the_rest_gradient_one():
    x = torch.ones(3, 2, 16, 16, requires_grad=True)
    y = _seeded(DiffAugment("translation,cutout"))(x)
    y.sum().backward()
    # With x all ones, y counts for each output pixel whether it survived; each survivor is one input pixel.
    assert torch.equal(x.grad.sum(dim=[1, 2, 3]), y.detach().sum(dim=[1, 2, 3]))
    assert set(x.grad.unique().tolist()) <= {0.0, 1.0} and (x.grad == 0).any()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_matches_cpu_for_the_same_draws():
    x = _images(5, c=3, h=32).requires_grad_(True)
    xc = x.detach().cuda().requires_grad_(True)
    dy, dx = torch.tensor([4, -4, 0, 1, -2]), torch.tensor([-1, 3, 4, 0, -4])
    top, left = torch.tensor([-3, 0, 10, 20, 5]), torch.tensor([7, -8, 25, 0, 16])
    for t in (x, xc):
        y = cutout(translate(adjust_contrast(t, torch.full([5], 1.3)), dy, dx), top, left, 16, 16)
        (y * y).sum().backward()
    assert torch.allclose(xc.grad.cpu(), x.grad, atol=1e-5)
    torch.cuda.manual_seed(0)
    y = DiffAugment()(xc.detach())
    assert y.device == xc.device and y.shape == xc.shape


def test_r1_in_the_gan_loss_goes_through_diffaugment_like_the_hand_written_penalty():
    """The loss's lazy R1 with DiffAugment as its augment pipe: gamma/2 |d D(aug(x)) / dx|^2, aug's draws fixed."""
    torch.manual_seed(1)
    G = Generator(
        z_dim=8,
        c_dim=0,
        w_dim=8,
        img_resolution=16,
        img_channels=3,
        mapping_kwargs=dict(num_layers=2),
        synthesis_kwargs=dict(channel_base=64, channel_max=8, use_noise=False),
    ).requires_grad_(False)
    D = Discriminator(
        c_dim=0,
        img_resolution=16,
        img_channels=3,
        channel_base=64,
        channel_max=8,
        epilogue_kwargs=dict(mbstd_group_size=1),
    ).requires_grad_(False)
    real, z, c = _images(4, c=3, h=16).clamp(-1, 1), torch.randn(4, 8), torch.zeros(4, 0)
    gamma, aug = 0.7, DiffAugment()
    loss = StyleGAN2Loss(torch.device("cpu"), G, D, LossOptions(r1_gamma=gamma, style_mixing_prob=0), augment_pipe=aug)
    D.requires_grad_(True)
    torch.manual_seed(5)
    loss.accumulate_gradients("Dreg", real, c, z, c, gain=1.0, cur_nimg=0)

    def d_grads():  # parameters R1 does not reach (e.g. the last bias) have no gradient: count them as 0
        return [torch.zeros_like(p) if p.grad is None else p.grad.clone() for p in D.parameters()]

    got = d_grads()
    for p in D.parameters():
        p.grad = None
    torch.manual_seed(5)
    x = real.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(D(aug(x), c).sum(), x, create_graph=True)
    (gamma / 2 * g.square().sum([1, 2, 3]).mean()).backward()
    want = d_grads()
    assert sum(float(w.abs().sum()) for w in want) > 0
    for a, b in zip(got, want):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-7)
    # And the draws mattered: without the same seed the penalty's gradients differ.
    for p in D.parameters():
        p.grad = None
    torch.manual_seed(6)
    loss.accumulate_gradients("Dreg", real, c, z, c, gain=1.0, cur_nimg=0)
    assert any(not torch.allclose(a, b, rtol=1e-4, atol=1e-7) for a, b in zip(d_grads(), want))
