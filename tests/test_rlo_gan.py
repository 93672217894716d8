"""rlo.GanObjective's pairings and the hinge member against hand-written formulas (values and gradients)."""

import pytest
import torch
import torch.nn.functional as F

import rlo


def logits(n=7, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return (torch.randn(n, generator=gen) * 3).requires_grad_(True), (torch.randn(n, generator=gen) * 3)


@pytest.mark.parametrize(
    "cfg, d_formula, g_formula",
    [
        (rlo.LossConfig("ce"), lambda m: F.softplus(-m), lambda m: F.softplus(-m)),
        (
            rlo.LossConfig("rlo", k=2),
            lambda m: 2 * (1 + torch.exp(-m)) ** 0.5,
            lambda m: 2 * (1 + torch.exp(-m)) ** 0.5,
        ),
        (
            rlo.LossConfig("rlo", k=3, m=5),
            lambda m: 5 * (1 + torch.exp(-m)) ** (1 / 3),
            lambda m: 5 * (1 + torch.exp(-m)) ** (1 / 3),
        ),
        (rlo.LossConfig("hinge"), lambda m: F.relu(1 - m), lambda m: -m),
    ],
)
def test_relativistic_terms_are_the_member_on_the_paired_margin(cfg, d_formula, g_formula):
    real, fake = logits()
    objective = rlo.GanObjective(cfg, "relativistic")
    got_d = objective.d_relativistic(real, fake)
    torch.testing.assert_close(got_d, d_formula(real - fake), rtol=1e-5, atol=1e-6)
    got_g = objective.g_relativistic(fake, real)
    torch.testing.assert_close(got_g, g_formula(fake - real), rtol=1e-5, atol=1e-6)
    (grad,) = torch.autograd.grad(got_d.sum(), real)
    (want,) = torch.autograd.grad(d_formula(real - fake).sum(), real)
    torch.testing.assert_close(grad, want, rtol=1e-5, atol=1e-6)


def test_hinge_gan_terms_are_biggans():
    real, fake = logits()
    objective = rlo.GanObjective(rlo.LossConfig("hinge"))
    torch.testing.assert_close(objective.d_real(real), F.relu(1 - real))
    torch.testing.assert_close(objective.d_fake(fake), F.relu(1 + fake))
    torch.testing.assert_close(objective.g_fake(fake), -fake)
    assert (
        objective.describe() == "hinge"
        and rlo.GanObjective(rlo.LossConfig("rlo", k=2), "relativistic").describe() == "rlo-k2-rel"
    )


def test_relativistic_pairing_needs_paired_batches_and_a_known_pairing():
    objective = rlo.GanObjective(rlo.LossConfig("ce"), "relativistic")
    with pytest.raises(ValueError, match=r"one shape.*\(4,\).*\(3,\)"):
        objective.d_relativistic(torch.zeros(4), torch.zeros(3))
    with pytest.raises(ValueError, match="pairing must be one of"):
        rlo.GanObjective(rlo.LossConfig("ce"), "paired")


def crammer_singer(z, y):
    others = z.clone()
    others[torch.arange(len(y)), y] = -float("inf")
    return F.relu(1 + others.max(1).values - z[torch.arange(len(y)), y])


def test_multiclass_hinge_is_crammer_singer_and_reduces_to_the_binary_hinge():
    gen = torch.Generator().manual_seed(1)
    z = torch.randn(9, 5, generator=gen) * 2
    y = torch.randint(5, (9,), generator=gen)
    torch.testing.assert_close(rlo.hinge_loss(z, y, reduction="none"), crammer_singer(z, y))
    two = torch.randn(9, 2, generator=gen)
    y2 = torch.randint(2, (9,), generator=gen)
    margin = two[:, 1] - two[:, 0]
    torch.testing.assert_close(rlo.hinge_loss(two, y2, reduction="none"), rlo.binary_hinge_loss(margin, y2, "none"))
    tied = torch.tensor([[2.0, 2.0, 0.0]])
    assert rlo.hinge_loss(tied, torch.tensor([0]), reduction="none").item() == pytest.approx(1.0)  # a tie is no margin


def test_multiclass_hinge_with_probability_targets_is_the_expected_loss():
    gen = torch.Generator().manual_seed(2)
    z = torch.randn(6, 4, generator=gen)
    q = torch.softmax(torch.randn(6, 4, generator=gen), 1)
    per_class = torch.stack([crammer_singer(z, torch.full((6,), j)) for j in range(4)], 1)
    torch.testing.assert_close(rlo.hinge_loss(z, q, reduction="none"), (q * per_class).sum(1))
    assert "hinge" in rlo.LOSS_NAMES and rlo.LossConfig.parse("hinge").describe() == "hinge"


# ----------------------------------------------------------------------------------------------------
# The self-normalised generator loss (g_selfnorm).

HARD_AND_EASY = torch.tensor([-60.0, -29.0, -5.0, 0.0, 3.0, 8.0], dtype=torch.float64)  # D rejects the first two


def _logit_grad(objective, logits, pairing_partner=None):
    s = logits.clone().requires_grad_(True)
    if pairing_partner is None:
        loss = objective.g_fake(s).mean()
    else:
        loss = objective.g_relativistic(s, pairing_partner).mean()
    (grad,) = torch.autograd.grad(loss, s)
    return grad


@pytest.mark.parametrize("k", [2.0, 11.0, 20.0])
@pytest.mark.parametrize("pairing", ["standard", "relativistic"])
def test_selfnormalised_eq4_is_the_gradient_of_k_log_mean_exp_of_the_nll(k, pairing):
    """Normalised eq. 4 = d/ds of k log(mean_i e^(n_i / k)), n_i G's nll on its logit or margin: eq. 4's batch
    direction (a monotone function of its batch loss) at CE's scale. (Below n / k = 50, eq. 4's exponent cap.)"""
    real = torch.linspace(-2, 2, len(HARD_AND_EASY), dtype=torch.float64)
    partner = real if pairing == "relativistic" else None
    objective = rlo.GanObjective(rlo.LossConfig("rlo", k=k), pairing, g_selfnorm=True)
    s = HARD_AND_EASY.clone().requires_grad_(True)
    n = F.softplus(-(s - real if partner is not None else s))
    (want,) = torch.autograd.grad(k * (torch.logsumexp(n / k, 0) - torch.log(torch.tensor(float(len(n))))), s)
    torch.testing.assert_close(_logit_grad(objective, HARD_AND_EASY, partner), want, rtol=1e-10, atol=1e-30)


def test_selfnormalisation_leaves_ce_unchanged():
    plain = _logit_grad(rlo.GanObjective(rlo.LossConfig("ce")), HARD_AND_EASY)
    normalised = _logit_grad(rlo.GanObjective(rlo.LossConfig("ce"), g_selfnorm=True), HARD_AND_EASY)
    torch.testing.assert_close(normalised, plain, rtol=1e-12, atol=0)


@pytest.mark.parametrize("name", [m.name for m in rlo.registry.MEMBERS if m.binary is not None])
def test_selfnormalised_logit_gradients_sum_to_at_most_one_for_every_member(name):
    """Mean-reduced, sum_i |dL/ds_i| = mean_i |w_i| sigmoid(-s_i) / mean |w| <= 1 whatever the member: no sample's
    weight can blow the batch gradient up. Unnormalised, eq. 4 at k = 2 reaches e^14 on the same logits."""
    objective = rlo.GanObjective(rlo.LossConfig(name), g_selfnorm=True)
    grad = _logit_grad(objective, HARD_AND_EASY)
    assert torch.isfinite(grad).all()
    assert grad.abs().sum() <= 1 + 1e-9
    assert objective.generator_weight(HARD_AND_EASY).requires_grad is False


def test_without_selfnormalisation_eq4_at_small_k_explodes_on_the_same_logits():
    grad = _logit_grad(rlo.GanObjective(rlo.LossConfig("rlo", k=2.0)), HARD_AND_EASY)
    assert grad.abs().sum() > 1e6


def test_selfnormalisation_is_named_in_the_label_and_float32_stays_float32():
    objective = rlo.GanObjective(rlo.LossConfig("rlo", k=2.0), "relativistic", g_selfnorm=True)
    assert objective.describe() == "rlo-k2-rel-gsn"
    assert objective.g_fake(HARD_AND_EASY.float()).dtype == torch.float32
