"""RootedBCEWithLogitsLoss / rooted_binary_cross_entropy_with_logits: nn.BCEWithLogitsLoss's options (soft targets,
weight, pos_weight) with the multi-class rule s * f(H); torch's BCE where f is the identity."""

import pytest
import torch
import torch.nn.functional as F

import rlo
from rlo import functional as RF

gen = torch.Generator().manual_seed(0)
Z = torch.randn(6, 3, generator=gen, dtype=torch.float64) * 3
Y = torch.rand(6, 3, generator=gen, dtype=torch.float64)
HARD = (Y > 0.5).double()
W = torch.rand(6, 3, generator=gen, dtype=torch.float64) + 0.5
PW = torch.tensor([0.5, 2.0, 3.0], dtype=torch.float64)


@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_the_rooted_form_minus_its_constant_tends_to_torchs_bce_with_every_option(reduction):
    """s * k (e^(H/k) - 1) -> s * H = torch's BCE (pos_weight, weight, soft targets) as k -> infinity."""
    k = 1e7
    rooted = RF.rooted_binary_cross_entropy_with_logits(Z, Y, k=k, reduction="none", weight=W, pos_weight=PW)
    s = (Y * PW + 1 - Y) * W
    want = F.binary_cross_entropy_with_logits(Z, Y, weight=W, pos_weight=PW, reduction="none")
    torch.testing.assert_close(rooted - k * s, want, rtol=1e-5, atol=1e-6)
    module = rlo.RootedBCEWithLogitsLoss(k=k, reduction=reduction, weight=W, pos_weight=PW)
    reduced = {"none": rooted, "mean": rooted.mean(), "sum": rooted.sum()}[reduction]
    torch.testing.assert_close(module(Z, Y), reduced)


@pytest.mark.parametrize("form", ["eq4", "eq9"])
def test_hard_targets_give_rooted_logistic_and_pos_weight_weighs_the_positives(form):
    got = RF.rooted_binary_cross_entropy_with_logits(Z, HARD, k=2.0, form=form, reduction="none")
    torch.testing.assert_close(got, RF.rooted_logistic(Z, HARD, k=2.0, form=form, reduction="none"))
    weighted = RF.rooted_binary_cross_entropy_with_logits(Z, HARD, k=2.0, form=form, reduction="none", pos_weight=PW)
    torch.testing.assert_close(weighted, torch.where(HARD > 0, PW * got, got))


def test_soft_targets_apply_the_rooted_form_to_the_cross_entropy_with_the_target():
    got = RF.rooted_binary_cross_entropy_with_logits(Z, Y, k=3.0, reduction="none")
    h = Y * F.softplus(-Z) + (1 - Y) * F.softplus(Z)
    torch.testing.assert_close(got, 3.0 * torch.exp(h / 3.0))
    assert torch.autograd.gradcheck(
        lambda z: RF.rooted_binary_cross_entropy_with_logits(z, Y, k=3.0, pos_weight=PW), (Z.clone().requires_grad_(),)
    )


def test_bad_targets_and_parameters_are_refused():
    with pytest.raises(ValueError, match=r"lie in \[0, 1\]"):
        RF.rooted_binary_cross_entropy_with_logits(Z, Y + 1, k=2.0)
    with pytest.raises(ValueError, match="must equal the logits'"):
        RF.rooted_binary_cross_entropy_with_logits(Z, Y[:2], k=2.0)
    with pytest.raises(ValueError, match="k must be"):
        rlo.RootedBCEWithLogitsLoss(k=0.0)
    loss = rlo.RootedBCEWithLogitsLoss(k=2.0, pos_weight=PW)
    assert loss.k == 2.0 and "k=2.0, m=2.0" in repr(loss) and "pos_weight" in dict(loss.named_buffers())


def test_compiles_as_one_graph():
    torch._dynamo.reset()
    compiled = torch.compile(rlo.RootedBCEWithLogitsLoss(k=2.0, pos_weight=PW), backend="eager", fullgraph=True)
    torch.testing.assert_close(compiled(Z, Y), rlo.RootedBCEWithLogitsLoss(k=2.0, pos_weight=PW)(Z, Y))
