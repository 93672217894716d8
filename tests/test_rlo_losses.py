"""The loss family against closed forms derived by hand (see rlo/functional.py and README's derivation)."""

import math

import pytest
import torch
import torch.nn.functional as F

import rlo

KS = [0.5, 1.0, 2.0, 3.0, 11.0, 100.0]


def sigmoid(x):
    return torch.sigmoid(x)


# ---------------------------------------------------------------------------------------------------------------
# Values.


@pytest.mark.parametrize("k", KS)
@pytest.mark.parametrize("m", [None, 1.0, 5.0])
def test_binary_values_equal_eq4_and_eq9(k, m):
    z = torch.randn(64, dtype=torch.float64) * 3
    y = torch.randint(0, 2, (64,))
    s = (2 * y - 1).double()
    mm = k if m is None else m
    eq4 = mm * (1 + torch.exp(-s * z)) ** (1 / k)
    eq9 = mm * (1 - (1 + torch.exp(-s * z)) ** (-1 / k))
    torch.testing.assert_close(rlo.rooted_logistic(z, y, k, m, reduction="none"), eq4)
    torch.testing.assert_close(rlo.rooted_logistic(z, y, k, m, form="eq9", reduction="none"), eq9)
    torch.testing.assert_close(rlo.rooted_logistic(z, y, k, m), eq4.mean())
    torch.testing.assert_close(rlo.rooted_logistic(z, y, k, m, reduction="sum"), eq4.sum())


@pytest.mark.parametrize("k", KS)
def test_multiclass_values_equal_powers_of_true_class_probability(k):
    logits = torch.randn(32, 7, dtype=torch.float64) * 2
    target = torch.randint(0, 7, (32,))
    p = torch.softmax(logits, dim=1).gather(1, target[:, None]).squeeze(1)
    torch.testing.assert_close(rlo.rooted_cross_entropy(logits, target, k, reduction="none"), k * p ** (-1 / k))
    torch.testing.assert_close(
        rlo.rooted_cross_entropy(logits, target, k, m=2.0, form="eq9", reduction="none"), 2.0 * (1 - p ** (1 / k))
    )


def test_signed_and_boolean_targets_agree_with_zero_one_targets():
    z = torch.randn(20, dtype=torch.float64)
    y01 = torch.randint(0, 2, (20,))
    ref = rlo.rooted_logistic(z, y01, 3.0, reduction="none")
    torch.testing.assert_close(rlo.rooted_logistic(z, 2 * y01 - 1, 3.0, reduction="none"), ref)
    torch.testing.assert_close(rlo.rooted_logistic(z, y01.bool(), 3.0, reduction="none"), ref)
    torch.testing.assert_close(rlo.rooted_logistic(z, y01.double(), 3.0, reduction="none"), ref)


def test_rooted_loss_module_is_a_cross_entropy_drop_in_including_spatial_logits():
    logits = torch.randn(4, 5, 3, 3)
    target = torch.randint(0, 5, (4, 3, 3))
    module = rlo.RootedLoss(k=3)
    loss = module(logits, target)
    assert loss.shape == ()
    p = torch.softmax(logits, dim=1).gather(1, target[:, None]).squeeze(1)
    torch.testing.assert_close(loss, (3 * p ** (-1 / 3)).mean())
    assert isinstance(module, torch.nn.Module)


def test_cross_entropy_member_equals_torch_cross_entropy():
    logits = torch.randn(16, 9)
    target = torch.randint(0, 9, (16,))
    torch.testing.assert_close(rlo.get_loss("ce")(logits, target), F.cross_entropy(logits, target))
    z = torch.randn(16)
    y = torch.randint(0, 2, (16,)).float()
    torch.testing.assert_close(rlo.logistic(z, y), F.binary_cross_entropy_with_logits(z, y))


def test_focal_with_gamma_zero_is_cross_entropy_and_matches_its_formula():
    logits = torch.randn(16, 4, dtype=torch.float64)
    target = torch.randint(0, 4, (16,))
    torch.testing.assert_close(rlo.focal_loss(logits, target, gamma=0.0, alpha=None), F.cross_entropy(logits, target))
    p = torch.softmax(logits, 1).gather(1, target[:, None]).squeeze(1)
    expected = (0.25 * (1 - p) ** 3 * -torch.log(p)).mean()
    torch.testing.assert_close(rlo.focal_loss(logits, target), expected)
    z = torch.randn(16, dtype=torch.float64)
    y = torch.randint(0, 2, (16,))
    pt = torch.where(y == 1, torch.sigmoid(z), 1 - torch.sigmoid(z))
    at = torch.where(y == 1, 0.25, 0.75)
    torch.testing.assert_close(rlo.binary_focal_loss(z, y), (at * (1 - pt) ** 3 * -torch.log(pt)).mean())


def test_unhinged_with_two_classes_is_the_binary_unhinged_loss_of_the_margin():
    logits = torch.randn(32, 2, dtype=torch.float64)
    target = torch.randint(0, 2, (32,))
    margin = logits[:, 1] - logits[:, 0]
    torch.testing.assert_close(
        rlo.unhinged_loss(logits, target, reduction="none"), rlo.binary_unhinged_loss(margin, target, reduction="none")
    )
    torch.testing.assert_close(
        rlo.binary_unhinged_loss(margin, target, reduction="none"), 1 - (2 * target - 1) * margin
    )


def test_unhinged_gradient_is_constant_in_the_logits():
    logits = torch.randn(8, 5, requires_grad=True)
    target = torch.randint(0, 5, (8,))
    (g1,) = torch.autograd.grad(rlo.unhinged_loss(logits, target, reduction="sum"), logits)
    (g2,) = torch.autograd.grad(rlo.unhinged_loss(logits * 7 + 3, target, reduction="sum"), logits)
    torch.testing.assert_close(g2, 7 * g1)
    expected = torch.full((8, 5), 1 / 4)
    expected[torch.arange(8), target] = -1
    torch.testing.assert_close(g1, expected)


# ---------------------------------------------------------------------------------------------------------------
# Derivatives: hand-derived closed forms vs autograd (first and second order).
#
# Binary margin u = y z, nll(u) = softplus(-u), d nll/du = -sigmoid(-u), d2 nll/du2 = sigmoid(u) sigmoid(-u).
# eq4 f(u) = m exp(nll/k):  f'  = -(m/k) (1+e^-u)^(1/k) sigmoid(-u)
#                           f'' =  (m/k) (1+e^-u)^(1/k) sigmoid(-u) [sigmoid(u) + sigmoid(-u)/k]  > 0 for all k > 0
# eq9 g(u) = m (1 - exp(-nll/k)):  g' = -(m/k) p^(1/k) sigmoid(-u),
#                                   g'' = (m/k) p^(1/k) sigmoid(-u) [sigmoid(u) - sigmoid(-u)/k]


@pytest.mark.parametrize("k", KS)
@pytest.mark.parametrize("m", [None, 4.0])
def test_binary_gradient_and_hessian_coefficients_match_closed_forms(k, m):
    u = torch.linspace(-8, 8, 41, dtype=torch.float64, requires_grad=True)
    mm = k if m is None else m
    root = (1 + torch.exp(-u.detach())) ** (1 / k)
    p_root = 1 / root
    sp, sn = sigmoid(u.detach()), sigmoid(-u.detach())
    for form, d1, d2 in [
        ("eq4", -(mm / k) * root * sn, (mm / k) * root * sn * (sp + sn / k)),
        ("eq9", -(mm / k) * p_root * sn, (mm / k) * p_root * sn * (sp - sn / k)),
    ]:
        loss = rlo.rooted_logistic(u, 1, k, m, form=form, reduction="sum")
        (g,) = torch.autograd.grad(loss, u, create_graph=True)
        (h,) = torch.autograd.grad(g.sum(), u)
        torch.testing.assert_close(g.detach(), d1)
        torch.testing.assert_close(h, d2)


@pytest.mark.parametrize("k", KS)
@pytest.mark.parametrize("form,power", [("eq4", -1.0), ("eq9", 1.0)])
def test_gradient_is_cross_entropy_gradient_times_m_over_k_p_to_the_root(k, form, power):
    logits = torch.randn(16, 6, dtype=torch.float64, requires_grad=True)
    target = torch.randint(0, 6, (16,))
    m = 2.5
    (g_rooted,) = torch.autograd.grad(rlo.rooted_cross_entropy(logits, target, k, m, form, reduction="sum"), logits)
    (g_ce,) = torch.autograd.grad(F.cross_entropy(logits, target, reduction="sum"), logits)
    p = torch.softmax(logits.detach(), 1).gather(1, target[:, None])
    torch.testing.assert_close(g_rooted, (m / k) * p ** (power / k) * g_ce)


def _logistic_regression_problem(n=60, d=4, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=gen, dtype=torch.float64)
    y = torch.where(torch.rand(n, generator=gen) < 0.5, -1.0, 1.0).double()
    w = torch.randn(d, generator=gen, dtype=torch.float64)
    return x, y, w


@pytest.mark.parametrize("k", [1.5, 2.0, 5.0, 20.0])
def test_full_batch_eq4_objective_has_the_derived_positive_definite_hessian(k):
    x, y, w = _logistic_regression_problem()
    objective = lambda w_: rlo.rooted_logistic(x @ w_, y, k)  # noqa: E731  (eq. 4, m = k, mean over samples)
    hessian = torch.autograd.functional.hessian(objective, w)
    u = y * (x @ w)
    coef = (1 + torch.exp(-u)) ** (1 / k) * sigmoid(-u) * (sigmoid(u) + sigmoid(-u) / k)  # m/k = 1
    torch.testing.assert_close(hessian, (x.T * coef) @ x / len(x))
    assert torch.linalg.eigvalsh(hessian).min() > 0


def test_the_papers_printed_hessian_coefficient_has_a_sign_slip():
    """Paper eq. 6-8 write sigmoid(y w'x); the derivation gives sigmoid(-y w'x). Autograd sides with the latter."""
    x, y, w = _logistic_regression_problem(seed=1)
    k = 3.0
    hessian = torch.autograd.functional.hessian(lambda w_: rlo.rooted_logistic(x @ w_, y, k), w)
    u = y * (x @ w)
    lk = (1 + torch.exp(-u)) ** (1 / k)
    as_printed = lk * sigmoid(u) * (1 - sigmoid(u) * (1 - 1 / k))
    as_derived = lk * sigmoid(-u) * (1 - sigmoid(-u) * (1 - 1 / k))
    torch.testing.assert_close(hessian, (x.T * as_derived) @ x / len(x))
    assert not torch.allclose(hessian, (x.T * as_printed) @ x / len(x), rtol=1e-3, atol=1e-6)


def test_large_k_recovers_cross_entropy_with_error_shrinking_like_one_over_k():
    logits = torch.randn(64, 10, dtype=torch.float64) * 2
    target = torch.randint(0, 10, (64,))
    ce = F.cross_entropy(logits, target)
    errors = {}
    for k in [100.0, 1000.0, 10000.0]:
        shifted = rlo.rooted_cross_entropy(logits, target, k) - k  # eq. 4 minus its constant m = k
        errors[k] = (shifted - ce).abs().item()
    assert errors[10000.0] < errors[1000.0] < errors[100.0]
    for small, large in [(100.0, 1000.0), (1000.0, 10000.0)]:
        assert errors[small] / errors[large] == pytest.approx(10.0, rel=0.05)
    nll = F.cross_entropy(logits, target, reduction="none")
    assert errors[1000.0] == pytest.approx((nll**2).mean().item() / (2 * 1000.0), rel=0.01)


# ---------------------------------------------------------------------------------------------------------------
# Numerical robustness.

EXTREMES = torch.tensor([-1e4, -300.0, -30.0, -1.0, 0.0, 1.0, 30.0, 300.0, 1e4])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("k", [0.5, 1.0, 2.0, 11.0, 100.0])
@pytest.mark.parametrize("name", ["rlo", "rlo-eq9", "ce", "focal", "unhinged"])
def test_extreme_logits_give_finite_values_and_gradients(dtype, k, name):
    cfg = rlo.LossConfig(name=name, k=k)
    z = EXTREMES.to(dtype).repeat(2).requires_grad_(True)
    y = torch.cat([torch.ones(len(EXTREMES)), torch.zeros(len(EXTREMES))])
    loss = rlo.binary_loss(cfg, z, y)
    (g,) = torch.autograd.grad(loss, z)
    assert torch.isfinite(loss) and torch.isfinite(g).all(), (loss, g)
    logits = torch.zeros(len(EXTREMES), 3, dtype=dtype)
    logits[:, 0] = EXTREMES.to(dtype)
    logits.requires_grad_(True)
    target = torch.tensor([1, 0, 2] * 3)
    loss = rlo.classification_loss(cfg, logits, target)
    (g,) = torch.autograd.grad(loss, logits)
    assert torch.isfinite(loss) and torch.isfinite(g).all(), (loss, g)


@pytest.mark.parametrize("form", ["eq4", "eq9"])
def test_autocast_bfloat16_logits_give_finite_float32_loss_and_gradients(form):
    layer = torch.nn.Linear(8, 5)
    x = torch.randn(32, 8) * 1e3
    target = torch.randint(0, 5, (32,))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = layer(x)
        assert logits.dtype == torch.bfloat16
        loss = rlo.rooted_cross_entropy(logits, target, k=0.5, form=form)
    assert loss.dtype == torch.float32
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(layer.weight.grad).all()


def test_eq4_is_exact_below_the_exponent_cap_and_continues_along_its_tangent_above():
    k, m = 1.0, 1.0
    cap = rlo.eq4_exponent_cap(torch.float32, k, m)
    assert cap == 50.0
    nll = torch.tensor([cap - 1.0, cap, cap + 1.0, cap + 10.0], dtype=torch.float64, requires_grad=True)
    value = rlo.rooted_from_nll(nll, k, m, input_dtype=torch.float32)
    (grad,) = torch.autograd.grad(value.sum(), nll)
    e = math.exp(cap)
    torch.testing.assert_close(value.detach(), torch.tensor([math.exp(cap - 1), e, 2 * e, 11 * e], dtype=torch.float64))
    torch.testing.assert_close(grad, torch.tensor([math.exp(cap - 1), e, e, e], dtype=torch.float64))


def test_float16_cap_keeps_the_largest_logit_gradient_representable():
    for k, m in [(0.5, None), (2.0, None), (1.0, 8.0)]:
        mm = k if m is None else m
        cap = rlo.eq4_exponent_cap(torch.float16, k, mm)
        assert (mm / k) * math.exp(cap) <= torch.finfo(torch.float16).max / 4 * (1 + 1e-9)
        z = torch.tensor([-1e4], dtype=torch.float16, requires_grad=True)
        (g,) = torch.autograd.grad(rlo.rooted_logistic(z, 1, k, m, reduction="sum"), z)
        assert torch.isfinite(g).all() and g.abs().item() > 0


@pytest.mark.parametrize("bad_k", [0, -1.0, float("nan"), float("inf"), "three"])
def test_invalid_k_raises_value_error_naming_k(bad_k):
    with pytest.raises(ValueError, match="k"):
        rlo.rooted_logistic(torch.randn(3), torch.ones(3), k=bad_k)
    with pytest.raises(ValueError, match="k"):
        rlo.RootedLoss(k=bad_k)


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="found values"):
        rlo.rooted_logistic(torch.randn(3), torch.tensor([0, 1, 2]), k=2)
    with pytest.raises(ValueError, match="out of range"):
        rlo.rooted_cross_entropy(torch.randn(3, 4), torch.tensor([0, 1, 4]), k=2)
    with pytest.raises(ValueError, match="reduction"):
        rlo.rooted_cross_entropy(torch.randn(3, 4), torch.tensor([0, 1, 2]), k=2, reduction="avg")
    with pytest.raises(ValueError, match="form"):
        rlo.RootedLoss(k=2, form="eq5")
    with pytest.raises(ValueError, match="unknown loss"):
        rlo.get_loss("hinges")
    with pytest.raises(ValueError, match="m must"):
        rlo.LossConfig(name="rlo", k=2, m=-1)


# ---------------------------------------------------------------------------------------------------------------
# Configuration and the GAN objectives.


def test_loss_config_round_trips_through_json_and_names_itself():
    cfg = rlo.LossConfig(name="rlo-eq9", k=3.0, m=5.0)
    assert rlo.LossConfig.from_json(cfg.to_json()) == cfg
    assert cfg.describe() == "rlo-eq9-k3-m5"
    assert rlo.LossConfig(name="rlo", k=2).describe() == "rlo-k2"
    assert rlo.LossConfig(name="ce").describe() == "ce"


def test_gan_objective_ce_is_the_stylegan2_softplus_loss():
    d_real, d_fake = torch.randn(8), torch.randn(8)
    obj = rlo.GanObjective(rlo.LossConfig(name="ce"))
    torch.testing.assert_close(obj.d_real(d_real), F.softplus(-d_real))
    torch.testing.assert_close(obj.d_fake(d_fake), F.softplus(d_fake))
    torch.testing.assert_close(obj.g_fake(d_fake), F.softplus(-d_fake))


@pytest.mark.parametrize("k,m", [(2.0, None), (11.0, 3.0)])
def test_gan_objective_rlo_roots_each_softplus_term(k, m):
    logits = torch.randn(8, dtype=torch.float64) * 4
    mm = k if m is None else m
    eq4 = rlo.GanObjective(rlo.LossConfig(name="rlo", k=k, m=m))
    torch.testing.assert_close(eq4.d_real(logits), mm * torch.exp(F.softplus(-logits) / k))
    torch.testing.assert_close(eq4.d_fake(logits), mm * torch.exp(F.softplus(logits) / k))
    torch.testing.assert_close(eq4.g_fake(logits), mm * torch.exp(F.softplus(-logits) / k))
    eq9 = rlo.GanObjective(rlo.LossConfig(name="rlo-eq9", k=k, m=m))
    torch.testing.assert_close(eq9.d_fake(logits), mm * (1 - torch.sigmoid(-logits) ** (1 / k)))


def test_a_tensor_of_k_values_evaluates_a_whole_k_grid_in_one_call():
    ks = torch.tensor([0.5, 3.0, 11.0, 100.0], dtype=torch.float64)
    z = torch.randn(len(ks), 50, dtype=torch.float64) * 40  # wide enough to hit the float16 cap below
    y = torch.randint(0, 2, (50,))
    for form in ["eq4", "eq9"]:
        for dtype in [torch.float64, torch.float16]:  # the target is broadcast explicitly: shapes must match
            batched = rlo.rooted_logistic(z.to(dtype), y.expand_as(z), ks[:, None], form=form, reduction="none")
            for i, k in enumerate(ks.tolist()):
                single = rlo.rooted_logistic(z[i].to(dtype), y, k, form=form, reduction="none")
                torch.testing.assert_close(batched[i], single)
    with pytest.raises(ValueError, match="k"):
        rlo.rooted_logistic(z, y.expand_as(z), torch.tensor([[1.0], [0.0], [2.0], [3.0]]))


def test_gan_objective_gives_the_cross_entropy_nll_of_each_term_for_every_member():
    logits = torch.randn(8, 1, dtype=torch.float64) * 4
    for cfg in [
        rlo.LossConfig("ce"),
        rlo.LossConfig("rlo", k=2),
        rlo.LossConfig("rlo-eq9", k=3, m=5),
        rlo.LossConfig("focal", gamma=2),
        rlo.LossConfig("unhinged"),
    ]:
        obj = rlo.GanObjective(cfg)
        torch.testing.assert_close(obj.nll_d_real(logits), F.softplus(-logits))
        torch.testing.assert_close(obj.nll_d_fake(logits), F.softplus(logits))
        torch.testing.assert_close(obj.nll_g_fake(logits), F.softplus(-logits))
    rooted = rlo.GanObjective(rlo.LossConfig("rlo", k=2))
    torch.testing.assert_close(rooted.d_fake(logits), 2 * torch.exp(rooted.nll_d_fake(logits) / 2))
    ce = rlo.GanObjective(rlo.LossConfig("ce"))
    torch.testing.assert_close(ce.g_fake(logits), ce.nll_g_fake(logits))
    half = rlo.GanObjective().nll_d_real(logits.half())
    assert half.dtype == torch.float32 and half.shape == (8, 1)  # losses are float32, like the objective's


# ---------------------------------------------------------------------------------------------------------------
# Binary targets: exactly the logits' shape, or one scalar.

BINARY_FUNCTIONS = {
    "logistic": lambda z, y: rlo.logistic(z, y),
    "rooted-eq4": lambda z, y: rlo.rooted_logistic(z, y, k=3),
    "rooted-eq9": lambda z, y: rlo.rooted_logistic(z, y, k=3, form="eq9"),
    "focal": lambda z, y: rlo.binary_focal_loss(z, y),
    "unhinged": lambda z, y: rlo.binary_unhinged_loss(z, y),
}


@pytest.mark.parametrize("name", BINARY_FUNCTIONS)
def test_binary_target_of_another_shape_raises_naming_both_shapes(name):
    """[N, 1] against [N] used to broadcast to [N, N] and return a wrong mean; nn.BCEWithLogitsLoss raises too."""
    fn = BINARY_FUNCTIONS[name]
    z, y = torch.randn(6), torch.randint(0, 2, (6,))
    with pytest.raises(ValueError, match=r"target shape \(6, 1\) does not match logits shape \(6,\)"):
        fn(z, y[:, None])
    with pytest.raises(ValueError, match=r"target shape \(6,\) does not match logits shape \(6, 1\)"):
        fn(z[:, None], y)
    with pytest.raises(ValueError):
        torch.nn.BCEWithLogitsLoss()(z, y[:, None].float())
    torch.testing.assert_close(fn(z[:, None], y[:, None]), fn(z, y))


@pytest.mark.parametrize("name", rlo.loss_names("binary"))
def test_every_member_refuses_a_mismatched_binary_target_through_the_family(name):
    cfg = rlo.LossConfig(name)
    z, y = torch.randn(6), torch.randint(0, 2, (6, 1))
    with pytest.raises(ValueError, match=r"\(6, 1\).*\(6,\)"):
        rlo.binary_loss(cfg, z, y)
    obj = rlo.GanObjective(cfg)  # its targets are scalars, so any logits shape is fine
    assert obj.d_real(z[:, None]).shape == obj.d_fake(z[:, None]).shape == (6, 1)
    torch.testing.assert_close(obj.d_real(z), rlo.binary_loss(cfg, z, torch.ones(6), reduction="none"))


@pytest.mark.parametrize("name", BINARY_FUNCTIONS)
def test_a_scalar_or_zero_dim_target_applies_to_every_logit(name):
    fn = BINARY_FUNCTIONS[name]
    z = torch.randn(3, 4)
    for target, full in [
        (1, torch.ones(3, 4)),
        (0, torch.zeros(3, 4)),
        (torch.tensor(-1), -torch.ones(3, 4)),
        (True, torch.ones(3, 4, dtype=torch.bool)),
    ]:
        torch.testing.assert_close(fn(z, target), fn(z, full))
    with pytest.raises(ValueError, match="binary target"):
        fn(z, "1")


# ---------------------------------------------------------------------------------------------------------------
# Parameters must be numbers: bools and strings are refused where they are given, not later.

NOT_NUMBERS = [True, False, "2", "three", [2.0], None]


@pytest.mark.parametrize("bad", NOT_NUMBERS, ids=repr)
def test_a_non_numeric_k_is_refused_at_construction_naming_k(bad):
    z, y = torch.randn(3), torch.ones(3)
    for build in [
        lambda: rlo.LossConfig("rlo", k=bad),
        lambda: rlo.LossConfig("ce", k=bad),
        lambda: rlo.RootedLoss(k=bad),
        lambda: rlo.get_loss("rlo-eq9", k=bad),
        lambda: rlo.rooted_logistic(z, y, k=bad),
        lambda: rlo.rooted_from_nll(z.abs(), k=bad),
        lambda: rlo.rooted_cross_entropy(torch.randn(3, 2), torch.ones(3, dtype=torch.long), k=bad),
    ]:
        with pytest.raises(TypeError, match=r"\bk must be a number"):
            build()


@pytest.mark.parametrize("bad", [b for b in NOT_NUMBERS if b is not None], ids=repr)
def test_non_numeric_m_gamma_alpha_are_refused_naming_them(bad):
    logits, target = torch.randn(3, 2), torch.ones(3, dtype=torch.long)
    cases = {
        "m": [
            lambda: rlo.LossConfig("rlo", k=2, m=bad),
            lambda: rlo.RootedLoss(k=2, m=bad),
            lambda: rlo.rooted_logistic(logits[:, 0], target, k=2, m=bad),
        ],
        "gamma": [
            lambda: rlo.LossConfig("focal", gamma=bad),
            lambda: rlo.get_loss("focal", gamma=bad),
            lambda: rlo.focal_loss(logits, target, gamma=bad),
            lambda: rlo.binary_focal_loss(logits[:, 0], target, gamma=bad),
        ],
        "alpha": [
            lambda: rlo.LossConfig("focal", alpha=bad),
            lambda: rlo.focal_loss(logits, target, alpha=bad),
            lambda: rlo.binary_focal_loss(logits[:, 0], target, alpha=bad),
        ],
    }
    for name, builds in cases.items():
        for build in builds:
            with pytest.raises(TypeError, match=rf"\b{name} must be a number"):
                build()


def test_ints_and_numpy_scalars_are_numbers_and_tensors_stay_for_the_functions():
    np = pytest.importorskip("numpy")
    cfg = rlo.LossConfig("rlo", k=np.float32(2.5), m=np.int64(3), gamma=2, alpha=np.float64(0.5))
    assert (cfg.k, cfg.m, cfg.gamma, cfg.alpha) == (2.5, 3.0, 2.0, 0.5) and type(cfg.m) is float
    assert rlo.LossConfig.from_json(cfg.to_json()) == cfg
    z, y = torch.randn(5, dtype=torch.float64), torch.randint(0, 2, (5,))
    torch.testing.assert_close(rlo.rooted_logistic(z, y, k=np.int64(2)), rlo.rooted_logistic(z, y, k=2.0))
    torch.testing.assert_close(rlo.rooted_logistic(z, y, k=torch.tensor(2)), rlo.rooted_logistic(z, y, k=2.0))
    with pytest.raises(TypeError, match="k must be a number here, got a tensor"):
        rlo.LossConfig("rlo", k=torch.tensor(2.0))
    with pytest.raises(TypeError, match="k must hold real numbers"):
        rlo.rooted_logistic(z, y, k=torch.tensor(True))
    with pytest.raises(ValueError, match="alpha must be a number in"):
        rlo.LossConfig("focal", alpha=1.5)
