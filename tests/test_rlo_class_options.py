"""nn.CrossEntropyLoss's options (weight, ignore_index, label_smoothing, probability targets, unbatched and spatial
input) for the whole multi-class family. Oracles: torch's own CrossEntropyLoss for ``ce``; for the other members
the rule of rlo/functional.py's docstring written out densely below, and its k -> inf limit, torch's CE."""

import itertools

import pytest
import torch
import torch.nn.functional as F

import rlo

C = 5
SHAPES = {"NC": (12, C), "NCHW": (3, C, 2, 4), "C": (C,)}
TARGETS = ["index", "index-ignore-2", "index-ignore--1", "prob"]  # ignore_index 2 (a class) or -1 (not one)
REDUCTIONS = ["mean", "sum", "none"]
COMBOS = list(itertools.product(SHAPES, TARGETS, [False, True], [0.0, 0.1]))
COMBO_IDS = [f"{shape}-{target}-{'w' if weighted else 'nw'}-ls{eps}" for shape, target, weighted, eps in COMBOS]
MEMBERS = {  # name -> LossConfig and the per-sample loss as a function of (nll H, sample weight s, a, logits)
    "rlo": (rlo.LossConfig("rlo", k=3.0), lambda H, s, a, z: s * 3.0 * torch.exp(H / 3.0)),
    "rlo-m": (rlo.LossConfig("rlo", k=2.0, m=5.0), lambda H, s, a, z: s * 5.0 * torch.exp(H / 2.0)),
    "rlo-eq9": (rlo.LossConfig("rlo-eq9", k=2.0, m=5.0), lambda H, s, a, z: s * 5.0 * (1 - torch.exp(-H / 2.0))),
    "focal": (
        rlo.LossConfig("focal", gamma=2.0, alpha=0.25),
        lambda H, s, a, z: s * 0.25 * (1 - torch.exp(-H)) ** 2 * H,
    ),
    "focal-no-alpha": (
        rlo.LossConfig("focal", gamma=0.5, alpha=None),
        lambda H, s, a, z: s * (1 - torch.exp(-H)) ** 0.5 * H,
    ),
    "unhinged": (
        rlo.LossConfig("unhinged"),
        lambda H, s, a, z: (a * (1 - (z - (z.sum(1, keepdim=True) - z) / (C - 1)))).sum(1),
    ),
}


def make_case(shape, target_kind, weighted, dtype=torch.float64, seed=0):
    """(logits, target, options) for one combination; about a third of an 'ignore' batch is ignored."""
    gen = torch.Generator().manual_seed(seed)
    logits = (torch.randn(SHAPES[shape], generator=gen, dtype=torch.float64) * 2).to(dtype)
    batch_shape = SHAPES[shape][:1] + SHAPES[shape][2:] if shape != "C" else ()
    options = {}
    if target_kind == "prob":
        scores = torch.randn(SHAPES[shape], generator=gen, dtype=torch.float64) * 2
        target = torch.softmax(scores, dim=0 if shape == "C" else 1).to(dtype)
    else:
        target = torch.randint(0, C, batch_shape, generator=gen)
        if target_kind != "index":
            ignore = int(target_kind.split("ignore-")[1])
            options["ignore_index"] = ignore
            if shape == "C":
                target = torch.tensor(ignore if ignore < 0 else 1)  # -1: ignored; class 1 is kept
            else:
                target = torch.where(torch.rand(batch_shape, generator=gen) < 0.35, ignore, target)
                target.view(-1)[0] = 4  # never all ignored here (its own test below)
    if weighted:
        options["weight"] = torch.tensor([0.5, 2.0, 1.0, 0.0, 3.0], dtype=dtype)  # class 3 weighs nothing
    return logits, target, options


def reference(logits, target, weight=None, ignore_index=-100, label_smoothing=0.0):
    """The documented rule, densely: a = w_j q_j (0 when ignored), s = sum a, H = -sum a log p / s, denominator."""
    z = logits.double()
    if z.ndim == 1:
        z, target = z[None], target[None]
    w = torch.ones(C, dtype=torch.float64) if weight is None else weight.double()
    w = w.view(1, C, *([1] * (z.ndim - 2)))
    if target.dtype.is_floating_point:
        q, valid = target.double(), torch.ones(z.shape[:1] + z.shape[2:], dtype=torch.bool)
        denominator = float(valid.numel())
    else:
        valid = target != ignore_index
        index = torch.where(valid, target, 0)
        q = F.one_hot(index, C).movedim(-1, 1).double()
        denominator = (w.expand_as(q) * q).sum(1)[valid].sum()
    q = (1 - label_smoothing) * q + label_smoothing / C
    a = w * q * valid.unsqueeze(1)
    s = a.sum(1)
    H = torch.where(s > 0, -(a * torch.log_softmax(z, 1)).sum(1) / torch.where(s > 0, s, 1), 0)
    return H, s, a, z, denominator


def reduced(per_sample, denominator, reduction, unbatched):
    if reduction == "mean":
        return per_sample.sum() / denominator
    if reduction == "sum":
        return per_sample.sum()
    return per_sample[0] if unbatched else per_sample


# ---------------------------------------------------------------------------------------------------------------
# ce is nn.CrossEntropyLoss.


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape,target_kind,weighted,eps", COMBOS, ids=COMBO_IDS)
def test_ce_member_equals_torch_cross_entropy_loss_for_every_option(shape, target_kind, weighted, eps, dtype):
    logits, target, options = make_case(shape, target_kind, weighted, dtype)
    for reduction in REDUCTIONS:
        expected = torch.nn.CrossEntropyLoss(reduction=reduction, label_smoothing=eps, **options)(logits, target)
        for got in (
            rlo.get_loss("ce", reduction, label_smoothing=eps, **options)(logits, target),
            rlo.cross_entropy(logits, target, reduction, label_smoothing=eps, **options),
        ):
            assert got.shape == expected.shape
            torch.testing.assert_close(
                got, expected.to(got.dtype), rtol=1e-6, atol=1e-7, equal_nan=True, msg=lambda m: f"{reduction}: {m}"
            )


@pytest.mark.parametrize("shape,target_kind,weighted,eps", COMBOS, ids=COMBO_IDS)
def test_focal_with_gamma_zero_and_no_alpha_is_torch_cross_entropy_for_every_option(shape, target_kind, weighted, eps):
    logits, target, options = make_case(shape, target_kind, weighted)
    for reduction in REDUCTIONS:
        expected = F.cross_entropy(logits, target, reduction=reduction, label_smoothing=eps, **options)
        got = rlo.focal_loss(logits, target, gamma=0.0, alpha=None, reduction=reduction, label_smoothing=eps, **options)
        torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-12, equal_nan=True)


# ---------------------------------------------------------------------------------------------------------------
# The other members: the documented formula, and the k -> inf limit.


@pytest.mark.parametrize("member", MEMBERS)
@pytest.mark.parametrize("shape,target_kind,weighted,eps", COMBOS, ids=COMBO_IDS)
def test_members_equal_the_documented_formula_for_every_option(member, shape, target_kind, weighted, eps):
    cfg, formula = MEMBERS[member]
    logits, target, options = make_case(shape, target_kind, weighted)
    H, s, a, z, denominator = reference(logits, target, label_smoothing=eps, **options)
    per_sample = formula(H, s, a, z)
    for reduction in REDUCTIONS:
        got = rlo.classification_loss(cfg, logits, target, reduction, label_smoothing=eps, **options)
        torch.testing.assert_close(
            got,
            reduced(per_sample, denominator, reduction, shape == "C"),
            rtol=1e-10,
            atol=1e-12,
            equal_nan=True,
            msg=lambda m: f"{reduction}: {m}",
        )


@pytest.mark.parametrize("shape,target_kind,weighted,eps", COMBOS, ids=COMBO_IDS)
def test_rooted_members_tend_to_torch_cross_entropy_as_k_grows_for_every_option(shape, target_kind, weighted, eps):
    """eq9 * k / m -> CE; (eq4 - m * s) * k / m -> CE, with the error shrinking like 1/k."""
    logits, target, options = make_case(shape, target_kind, weighted)
    s = reference(logits, target, label_smoothing=eps, **options)[1]
    s = s[0] if shape == "C" else s
    for reduction in REDUCTIONS:
        ce = F.cross_entropy(logits, target, reduction=reduction, label_smoothing=eps, **options)
        k, m = 1e7, 2.0
        eq9 = rlo.rooted_cross_entropy(logits, target, k, m, "eq9", reduction, label_smoothing=eps, **options)
        torch.testing.assert_close(eq9 * k / m, ce, rtol=1e-5, atol=1e-9, equal_nan=True)
    ce = F.cross_entropy(logits, target, reduction="none", label_smoothing=eps, **options)
    errors = []
    for k in (1e3, 1e4):
        eq4 = rlo.rooted_cross_entropy(logits, target, k, reduction="none", label_smoothing=eps, **options)
        errors.append(((eq4 - k * s) - ce).abs().max().item())
    assert errors[1] < 1e-3 * ce.abs().max().item() + 1e-12
    if errors[0] > 1e-9:
        assert errors[0] / errors[1] == pytest.approx(10.0, rel=0.05)


def test_eq4_with_class_weights_is_the_sample_weight_times_the_rooted_loss():
    logits, target, options = make_case("NC", "index", weighted=True)
    p = torch.softmax(logits, 1).gather(1, target[:, None]).squeeze(1)
    w_y = options["weight"][target]
    got = rlo.RootedLoss(k=3, reduction="none", weight=options["weight"])(logits, target)
    torch.testing.assert_close(got, w_y * 3 * p ** (-1 / 3))
    mean = rlo.RootedLoss(k=3, weight=options["weight"])(logits, target)
    torch.testing.assert_close(mean, (w_y * 3 * p ** (-1 / 3)).sum() / w_y.sum())


@pytest.mark.parametrize("member", MEMBERS)
def test_a_one_hot_probability_target_is_the_index_target(member):
    cfg = MEMBERS[member][0]
    logits, target, options = make_case("NCHW", "index", weighted=True)
    one_hot = F.one_hot(target, C).movedim(-1, 1).double()
    for reduction in ["none", "sum"]:  # 'mean' differs, as in torch: index targets divide by sum of w_y
        torch.testing.assert_close(
            rlo.classification_loss(cfg, logits, one_hot, reduction, **options),
            rlo.classification_loss(cfg, logits, target, reduction, **options),
        )


# ---------------------------------------------------------------------------------------------------------------
# Gradients, all-ignored batches, modules and argument checks.


@pytest.mark.parametrize("member", MEMBERS)
@pytest.mark.parametrize("target_kind", TARGETS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_gradients_are_finite_with_every_option_even_for_extreme_logits(member, target_kind, dtype):
    cfg = MEMBERS[member][0]
    logits, target, options = make_case("NCHW", target_kind, weighted=True, dtype=dtype)
    logits = (logits.float() * 2000).to(dtype).requires_grad_(True)  # |z| ~ 1e4: the nll reaches the eq4 cap
    loss = rlo.classification_loss(cfg, logits, target, label_smoothing=0.1, **options)
    (grad,) = torch.autograd.grad(loss, logits)
    assert torch.isfinite(loss) and torch.isfinite(grad).all()
    if cfg.name != "rlo-eq9":  # bounded eq. 9 saturates out here: its gradient is CE's times p^(1/k) ~ 0
        assert grad.abs().sum() > 0


@pytest.mark.parametrize("member", ["ce"] + list(MEMBERS))
@pytest.mark.parametrize("eps", [0.0, 0.1])
@pytest.mark.parametrize("weighted", [False, True])
def test_an_all_ignored_batch_gives_what_torch_gives(member, eps, weighted):
    """torch: mean nan (0 / 0) with zero gradients, sum 0, none all zeros."""
    cfg = rlo.LossConfig("ce") if member == "ce" else MEMBERS[member][0]
    logits = torch.randn(4, C, dtype=torch.float64, requires_grad=True)
    target = torch.full((4,), -100)
    options = dict(weight=torch.arange(1.0, C + 1, dtype=torch.float64)) if weighted else {}
    for reduction in REDUCTIONS:
        got = rlo.classification_loss(cfg, logits, target, reduction, label_smoothing=eps, **options)
        expected = F.cross_entropy(logits, target, reduction=reduction, label_smoothing=eps, **options)
        torch.testing.assert_close(got, expected, equal_nan=True)
        (grad,) = torch.autograd.grad(got.sum(), logits)
        (grad_torch,) = torch.autograd.grad(expected.sum(), logits)
        torch.testing.assert_close(grad, grad_torch)
    assert torch.isnan(rlo.classification_loss(cfg, logits, target))
    empty = rlo.classification_loss(cfg, torch.zeros(0, C), torch.zeros(0, dtype=torch.long))
    assert torch.isnan(empty) and torch.isnan(F.cross_entropy(torch.zeros(0, C), torch.zeros(0, dtype=torch.long)))


def test_rooted_loss_module_takes_the_cross_entropy_options_and_moves_its_weight():
    weight = torch.tensor([0.5, 2.0, 1.0, 0.0, 3.0])
    module = rlo.RootedLoss(k=3, form="eq9", weight=weight, ignore_index=2, label_smoothing=0.1)
    assert "weight" in dict(module.named_buffers()) and "ignore_index=2" in repr(module)
    logits, target, _ = make_case("NC", "index-ignore-2", weighted=False, dtype=torch.float32)
    H, s, _, _, denominator = reference(logits, target, weight, 2, 0.1)
    expected = (s * 3 * (1 - torch.exp(-H / 3))).sum() / denominator
    torch.testing.assert_close(module(logits, target), expected.float())
    assert module.double().weight.dtype == torch.float64
    unbatched = module(logits[0], target[0]) if target[0] != 2 else module(logits[1], target[1])
    assert unbatched.shape == ()


def test_bad_targets_and_options_are_named():
    logits = torch.randn(4, C)
    with pytest.raises(ValueError, match=r"shape \(4,\).*\(4, 1\)"):
        rlo.cross_entropy(logits, torch.zeros(4, 1, dtype=torch.long))
    with pytest.raises(ValueError, match=r"probability target must have the logits' shape \(4, 5\)"):
        rlo.rooted_cross_entropy(logits, torch.zeros(4), k=2)
    with pytest.raises(ValueError, match="ignore_index applies to class-index targets"):
        rlo.cross_entropy(logits, torch.softmax(logits, 1), ignore_index=0)
    with pytest.raises(RuntimeError):  # torch refuses the same combination
        F.cross_entropy(logits, torch.softmax(logits, 1), ignore_index=0)
    with pytest.raises(ValueError, match=r"probability target must be >= 0"):
        rlo.cross_entropy(logits, -torch.softmax(logits, 1))
    with pytest.raises(ValueError, match=r"weight .*shape \(5,\).*\(3,\)"):
        rlo.get_loss("rlo", weight=torch.ones(3))(logits, torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="weight must hold finite numbers >= 0"):
        rlo.RootedLoss(k=2, weight=torch.tensor([1.0, -1.0, 1.0, 1.0, 1.0]))
    with pytest.raises(TypeError, match="weight"):
        rlo.RootedLoss(k=2, weight=[1.0] * C)
    with pytest.raises(ValueError, match="label_smoothing"):
        rlo.get_loss("focal", label_smoothing=1.5)
    with pytest.raises(TypeError, match="ignore_index"):
        rlo.get_loss("ce", ignore_index=1.0)
    with pytest.raises(ValueError, match=r"unbatched logits \(5,\).*shape \(2,\)"):
        rlo.cross_entropy(torch.randn(C), torch.tensor([1, 2]))
    with pytest.raises(ValueError, match="class index out of range"):
        rlo.cross_entropy(logits, torch.tensor([0, 1, 2, 7]), ignore_index=6)


def test_a_tensor_of_k_values_gives_one_multiclass_loss_per_k_with_every_option():
    ks = torch.tensor([0.5, 3.0, 100.0], dtype=torch.float64)
    logits, target, options = make_case("NC", "index-ignore-2", weighted=True)
    batched = rlo.rooted_cross_entropy(logits, target, ks[:, None], reduction="none", label_smoothing=0.1, **options)
    singles = [
        rlo.rooted_cross_entropy(logits, target, k, reduction="none", label_smoothing=0.1, **options)
        for k in ks.tolist()
    ]
    torch.testing.assert_close(batched, torch.stack(singles))
    means = [rlo.rooted_cross_entropy(logits, target, k, label_smoothing=0.1, **options) for k in ks.tolist()]
    torch.testing.assert_close(
        rlo.rooted_cross_entropy(logits, target, ks[:, None], label_smoothing=0.1, **options), torch.stack(means).mean()
    )  # 'mean' averages over the grid too, as before
