"""StyleGAN2Loss: each phase's gradients equal those of the loss written out by hand (independent oracles)."""

import math

import pytest
import torch
import torch.nn.functional as F

import rlo
from torch_utils import training_stats
from training.loss import StyleGAN2Loss
from training.networks import Discriminator, Generator
from training.options import LossOptions

RES = 16


def tiny_networks(c_dim=0):
    torch.manual_seed(1)
    G = Generator(
        z_dim=8,
        c_dim=c_dim,
        w_dim=8,
        img_resolution=RES,
        img_channels=3,
        mapping_kwargs=dict(num_layers=2),
        synthesis_kwargs=dict(channel_base=64, channel_max=8, use_noise=False),
    )
    D = Discriminator(
        c_dim=c_dim,
        img_resolution=RES,
        img_channels=3,
        channel_base=64,
        channel_max=8,
        epilogue_kwargs=dict(mbstd_group_size=1),
    )
    return G.train().requires_grad_(False), D.train().requires_grad_(False)


def batch(n=4, seed=2):
    gen = torch.Generator().manual_seed(seed)
    real = torch.rand([n, 3, RES, RES], generator=gen) * 2 - 1
    z = torch.randn([n, 8], generator=gen)
    c = torch.zeros([n, 0])
    return real, c, z


def grads(module):
    return [p.grad.clone() if p.grad is not None else None for p in module.parameters()]


def run_phase(loss, module, phase, real, c, z, gain=1.0):
    module.requires_grad_(True)
    for p in module.parameters():
        p.grad = None
    loss.accumulate_gradients(phase, real, c, z, c, gain=gain, cur_nimg=0)
    module.requires_grad_(False)
    return grads(module)


def oracle_grads(module, scalar_fn):
    module.requires_grad_(True)
    for p in module.parameters():
        p.grad = None
    scalar_fn().backward()
    module.requires_grad_(False)
    return grads(module)


def assert_grads_close(got, want, rtol=1e-4, atol=1e-6):
    assert len(got) == len(want)
    for g, w in zip(got, want):
        if w is None:
            assert g is None or torch.count_nonzero(g) == 0
        else:
            torch.testing.assert_close(g, w, rtol=rtol, atol=atol)


def rooted_eq4(logits, y, k, m):
    # m * (1 + exp(-y z)) ** (1/k): the paper's eq. 4 for a binary label y in {-1, +1}.
    return m * (1 + torch.exp(-y * logits)) ** (1 / k)


OBJECTIVES = {
    "ce": (rlo.LossConfig("ce"), lambda z, y: F.softplus(-y * z)),
    "rlo-k2": (rlo.LossConfig("rlo", k=2), lambda z, y: rooted_eq4(z, y, 2.0, 2.0)),
    "rlo-k3-m5": (rlo.LossConfig("rlo", k=3, m=5), lambda z, y: rooted_eq4(z, y, 3.0, 5.0)),
    "rlo-eq9-k4": (rlo.LossConfig("rlo-eq9", k=4), lambda z, y: 4.0 * (1 - (1 + torch.exp(-y * z)) ** (-1 / 4))),
}


@pytest.mark.parametrize("name", list(OBJECTIVES))
def test_dmain_gradients_equal_hand_written_loss(name):
    adversarial, formula = OBJECTIVES[name]
    G, D = tiny_networks()
    real, c, z = batch()
    loss = StyleGAN2Loss(
        torch.device("cpu"), G, D, LossOptions(adversarial=adversarial, style_mixing_prob=0, r1_gamma=1.0)
    )
    got = run_phase(loss, D, "Dmain", real, c, z)
    fake = G(z, c).detach()
    want = oracle_grads(D, lambda: formula(D(fake, c), -1.0).mean() + formula(D(real, c), 1.0).mean())
    assert_grads_close(got, want)
    assert all(p.grad is None for p in G.parameters())


@pytest.mark.parametrize("name", list(OBJECTIVES))
def test_gmain_gradients_equal_non_saturating_loss(name):
    adversarial, formula = OBJECTIVES[name]
    G, D = tiny_networks()
    real, c, z = batch()
    loss = StyleGAN2Loss(torch.device("cpu"), G, D, LossOptions(adversarial=adversarial, style_mixing_prob=0))
    got = run_phase(loss, G, "Gmain", real, c, z, gain=3.0)
    want = oracle_grads(G, lambda: 3.0 * formula(D(G(z, c), c), 1.0).mean())
    assert_grads_close(got, want)
    assert all(p.grad is None for p in D.parameters())


def test_r1_gradients_equal_gamma_half_squared_input_gradient_norm():
    G, D = tiny_networks()
    real, c, z = batch()
    gamma, gain = 0.7, 16.0
    loss = StyleGAN2Loss(torch.device("cpu"), G, D, LossOptions(r1_gamma=gamma, style_mixing_prob=0))
    got = run_phase(loss, D, "Dreg", real, c, z, gain=gain)

    def r1():
        x = real.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(D(x, c).sum(), x, create_graph=True)  # plain autograd, weight grads included
        return gain * (gamma / 2) * g.square().sum([1, 2, 3]).mean()

    want = oracle_grads(D, r1)
    assert_grads_close(got, want)


def test_path_length_penalty_and_running_mean():
    G, D = tiny_networks()
    real, c, z = batch(n=4)
    loss = StyleGAN2Loss(
        torch.device("cpu"), G, D, LossOptions(style_mixing_prob=0, pl_weight=2.0, pl_batch_shrink=2, pl_decay=0.1)
    )
    loss.pl_mean.fill_(0.5)
    torch.manual_seed(5)
    got = run_phase(loss, G, "Greg", real, c, z, gain=4.0)
    got_pl_mean = float(loss.pl_mean)

    torch.manual_seed(5)  # same path-length noise draw

    def pl():
        ws = G.mapping(z[:2], c[:2])
        img = G.synthesis(ws)
        noise = torch.randn_like(img) / math.sqrt(RES * RES)
        (g,) = torch.autograd.grad((img * noise).sum(), ws, create_graph=True)
        lengths = g.square().sum(2).mean(1).sqrt()
        mean = 0.5 + 0.1 * (lengths.mean() - 0.5)
        pl.mean = float(mean.detach())
        return 4.0 * 2.0 * (lengths - mean).square().mean()

    want = oracle_grads(G, pl)
    assert_grads_close(got, want)
    assert got_pl_mean == pytest.approx(pl.mean, rel=1e-5)


def test_dboth_equals_dmain_plus_dreg():
    G, D = tiny_networks()
    real, c, z = batch()
    loss = StyleGAN2Loss(torch.device("cpu"), G, D, LossOptions(r1_gamma=2.0, style_mixing_prob=0))
    both = run_phase(loss, D, "Dboth", real, c, z)
    main = run_phase(loss, D, "Dmain", real, c, z)
    reg = run_phase(loss, D, "Dreg", real, c, z)
    summed = [a + (b if b is not None else 0) for a, b in zip(main, reg)]  # R1 leaves e.g. D's output bias untouched
    assert_grads_close(both, summed)


def test_style_mixing_changes_only_layers_after_a_crossover():
    G, D = tiny_networks()
    _, c, z = batch()
    loss = StyleGAN2Loss(torch.device("cpu"), G, D, LossOptions(style_mixing_prob=1.0))
    torch.manual_seed(3)
    _, ws = loss.run_G(z, c)
    plain = G.mapping(z, c)
    same = (ws == plain).all(dim=2).all(dim=0)  # per layer
    cutoff = int(same.logical_not().nonzero()[0])
    assert 1 <= cutoff < G.num_ws
    assert same[:cutoff].all() and not same[cutoff:].any()


def test_scores_and_losses_are_reported():
    G, D = tiny_networks()
    real, c, z = batch()
    training_stats.reset()
    collector = training_stats.Collector("Loss/.*")
    loss = StyleGAN2Loss(torch.device("cpu"), G, D, LossOptions(style_mixing_prob=0))
    run_phase(loss, D, "Dmain", real, c, z)
    collector.update()
    with torch.no_grad():
        real_logits = D(real, c)
        fake_logits = D(G(z, c), c)
    assert collector.mean("Loss/scores/real") == pytest.approx(float(real_logits.mean()), rel=1e-5)
    assert collector.mean("Loss/scores/fake") == pytest.approx(float(fake_logits.mean()), rel=1e-5)
    assert collector.mean("Loss/signs/real") == pytest.approx(float(real_logits.sign().mean()))
    d_loss = F.softplus(fake_logits) + F.softplus(-real_logits)
    assert collector.mean("Loss/D/loss") == pytest.approx(float(d_loss.mean()), rel=1e-5)
    assert collector.num("Loss/D/loss") == 4


def test_non_finite_loss_is_counted():
    G, D = tiny_networks()
    real, c, z = batch()
    loss = StyleGAN2Loss(torch.device("cpu"), G, D, LossOptions(r1_gamma=float("inf"), style_mixing_prob=0))
    run_phase(loss, D, "Dmain", real, c, z)
    assert float(loss.nonfinite) == 0
    run_phase(loss, D, "Dreg", real, c, z)
    assert float(loss.nonfinite) > 0


def test_unknown_phase_is_rejected():
    G, D = tiny_networks()
    real, c, z = batch()
    loss = StyleGAN2Loss(torch.device("cpu"), G, D)
    with pytest.raises(ValueError, match="Gmian"):
        loss.accumulate_gradients("Gmian", real, c, z, c, gain=1, cur_nimg=0)


def test_blur_is_a_separable_gaussian_applied_before_d():
    G, D = tiny_networks()
    real, c, _ = batch()
    loss = StyleGAN2Loss(torch.device("cpu"), G, D, LossOptions(blur_init_sigma=2.0, blur_fade_kimg=1.0))
    sigma = 1.5
    x = torch.arange(-4, 5, dtype=torch.float32)  # 3 sigma, rounded down
    k = torch.pow(2.0, -((x / sigma) ** 2))
    k = k / k.sum()
    weight = (k[:, None] * k[None, :]).expand(3, 1, 9, 9)
    blurred = F.conv2d(real, weight, padding=4, groups=3)  # zero padding, like upfirdn2d.filter2d
    with torch.no_grad():
        torch.testing.assert_close(loss.run_D(real, c, blur_sigma=sigma), D(blurred, c), rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(loss.run_D(real, c, blur_sigma=0.3), D(real, c))  # under one pixel: off


@pytest.mark.parametrize("adversarial", [rlo.LossConfig("rlo", k=2), rlo.LossConfig("rlo-eq9", k=3)])
def test_rooted_runs_log_the_ce_equivalent_nll_beside_the_rooted_loss(adversarial):
    G, D = tiny_networks()
    real, c, z = batch()
    loss = StyleGAN2Loss(torch.device("cpu"), G, D, LossOptions(adversarial=adversarial, style_mixing_prob=0))
    seen, run_D = [], loss.run_D

    def recording_run_D(img, c, blur_sigma=0):
        logits = run_D(img, c, blur_sigma)
        seen.append(logits.detach().clone())
        return logits

    loss.run_D = recording_run_D
    training_stats.reset()
    collector = training_stats.Collector(regex="Loss/.*")
    run_phase(loss, G, "Gmain", real, c, z)
    (fake_logits,) = seen
    collector.update()
    assert collector.mean("Loss/G/nll") == pytest.approx(float(F.softplus(-fake_logits).mean()), rel=1e-5)
    assert collector.mean("Loss/G/loss") != pytest.approx(collector.mean("Loss/G/nll"))
    seen.clear()
    run_phase(loss, D, "Dmain", real, c, z)
    fake_logits, real_logits = seen
    collector.update()
    want = F.softplus(fake_logits) + F.softplus(-real_logits)
    assert collector.mean("Loss/D/nll") == pytest.approx(float(want.mean()), rel=1e-5)


def test_ce_runs_do_not_log_a_duplicate_nll():
    G, D = tiny_networks()
    real, c, z = batch()
    loss = StyleGAN2Loss(torch.device("cpu"), G, D, LossOptions(style_mixing_prob=0))
    training_stats.reset()
    collector = training_stats.Collector(regex="Loss/.*")
    run_phase(loss, G, "Gmain", real, c, z)
    collector.update()
    assert "Loss/G/loss" in collector.names() and "Loss/G/nll" not in collector.names()


# Every loss x pairing against its hand-written D and G losses: (D(real), D(fake)) -> D loss, and
# (D(fake), D(real)) -> G loss, both per-sample means.
def softplus_ce(z):
    return F.softplus(-z)  # -log sigmoid(z): the nll of target 'real'


PAIRED = {
    ("ce", "standard"): (
        rlo.LossConfig("ce"),
        lambda r, f: F.softplus(-r).mean() + F.softplus(f).mean(),
        lambda f, r: F.softplus(-f).mean(),
    ),
    ("hinge", "standard"): (
        rlo.LossConfig("hinge"),  # BigGAN / Projected GAN
        lambda r, f: F.relu(1 - r).mean() + F.relu(1 + f).mean(),
        lambda f, r: (-f).mean(),
    ),
    ("ce", "relativistic"): (
        rlo.LossConfig("ce"),  # RpGAN as in R3GAN
        lambda r, f: F.softplus(-(r - f)).mean(),
        lambda f, r: F.softplus(-(f - r)).mean(),
    ),
    ("rlo-k2", "relativistic"): (
        rlo.LossConfig("rlo", k=2),  # rooted relativistic: 2 (1 + e^-(margin))^(1/2)
        lambda r, f: rooted_eq4(r - f, 1.0, 2.0, 2.0).mean(),
        lambda f, r: rooted_eq4(f - r, 1.0, 2.0, 2.0).mean(),
    ),
    ("rlo-eq9-k3", "relativistic"): (
        rlo.LossConfig("rlo-eq9", k=3),
        lambda r, f: (3 * (1 - (1 + torch.exp(-(r - f))) ** (-1 / 3))).mean(),
        lambda f, r: (3 * (1 - (1 + torch.exp(-(f - r))) ** (-1 / 3))).mean(),
    ),
    ("hinge", "relativistic"): (
        rlo.LossConfig("hinge"),
        lambda r, f: F.relu(1 - (r - f)).mean(),
        lambda f, r: (-(f - r)).mean(),
    ),
}


@pytest.mark.parametrize("key", list(PAIRED), ids=["-".join(k) for k in PAIRED])
def test_each_loss_and_pairing_gives_the_hand_written_d_and_g_gradients(key):
    adversarial, d_formula, g_formula = PAIRED[key]
    G, D = tiny_networks()
    real, c, z = batch()
    opts = LossOptions(adversarial=adversarial, pairing=key[1], style_mixing_prob=0, r1_gamma=1.0)
    loss = StyleGAN2Loss(torch.device("cpu"), G, D, opts)
    fake = G(z, c).detach()
    got_D = run_phase(loss, D, "Dmain", real, c, z)
    assert_grads_close(got_D, oracle_grads(D, lambda: d_formula(D(real, c), D(fake, c))))
    got_G = run_phase(loss, G, "Gmain", real, c, z, gain=2.0)
    assert_grads_close(got_G, oracle_grads(G, lambda: 2.0 * g_formula(D(G(z, c), c), D(real, c).detach())))
    # the logged D loss is the hand-written value
    training_stats.reset()
    collector = training_stats.Collector(regex="Loss/D/loss")
    run_phase(loss, D, "Dmain", real, c, z)
    collector.update()
    with torch.no_grad():
        want = d_formula(D(real, c), D(fake, c))
    if key[1] == "relativistic":
        assert collector.mean("Loss/D/loss") == pytest.approx(float(want), rel=1e-5)


def test_r2_gradients_equal_gamma_half_squared_gradient_norm_on_fakes_with_lazy_gain():
    G, D = tiny_networks()
    real, c, z = batch()
    gamma, gain = 0.3, 16.0
    loss = StyleGAN2Loss(torch.device("cpu"), G, D, LossOptions(r1_gamma=0, r2_gamma=gamma, style_mixing_prob=0))
    got = run_phase(loss, D, "Dreg", real, c, z, gain=gain)
    fake = G(z, c).detach()

    def r2():
        x = fake.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(D(x, c).sum(), x, create_graph=True)
        return gain * (gamma / 2) * g.square().sum([1, 2, 3]).mean()

    assert_grads_close(got, oracle_grads(D, r2))
    assert all(p.grad is None for p in G.parameters())


def test_r1_plus_r2_is_the_sum_of_both_penalties():
    G, D = tiny_networks()
    real, c, z = batch()
    both = StyleGAN2Loss(torch.device("cpu"), G, D, LossOptions(r1_gamma=0.5, r2_gamma=0.5, style_mixing_prob=0))
    r1 = StyleGAN2Loss(torch.device("cpu"), G, D, LossOptions(r1_gamma=0.5, style_mixing_prob=0))
    r2 = StyleGAN2Loss(torch.device("cpu"), G, D, LossOptions(r1_gamma=0, r2_gamma=0.5, style_mixing_prob=0))
    got = run_phase(both, D, "Dreg", real, c, z)
    add = lambda a, b: b if a is None else a if b is None else a + b  # noqa: E731
    want = [add(a, b) for a, b in zip(run_phase(r1, D, "Dreg", real, c, z), run_phase(r2, D, "Dreg", real, c, z))]
    assert_grads_close(got, want)


def lecam_oracle(real_logits, fake_logits, history, decay=0.99):
    """The authors' form: zero-debiased EMAs of the batch means (this batch included), one-sided squares."""
    history = history + [(float(real_logits.detach().mean()), float(fake_logits.detach().mean()))]
    t = len(history)
    biased = [0.0, 0.0]
    for r, f in history:
        biased = [decay * biased[0] + (1 - decay) * r, decay * biased[1] + (1 - decay) * f]
    a_real, a_fake = biased[0] / (1 - decay**t), biased[1] / (1 - decay**t)
    value = F.relu(real_logits - a_fake).square().mean() + F.relu(a_real - fake_logits).square().mean()
    return value, history


def test_lecam_value_and_gradients_equal_the_authors_form_over_several_steps():
    G, D = tiny_networks()
    weight = 0.25
    loss = StyleGAN2Loss(torch.device("cpu"), G, D, LossOptions(lecam_weight=weight, style_mixing_prob=0, r1_gamma=0))
    history = []
    for step in range(3):
        real, c, z = batch(seed=10 + step)
        fake = G(z, c).detach()
        with torch.no_grad():
            _, history_after = lecam_oracle(D(real, c), D(fake, c), history)
        got = run_phase(loss, D, "Dmain", real, c, z)
        want = oracle_grads(
            D,
            lambda: (
                F.softplus(-D(real, c)).mean()
                + F.softplus(D(fake, c)).mean()
                + weight * lecam_oracle(D(real, c), D(fake, c), history)[0]
            ),
        )
        assert_grads_close(got, want)
        history = history_after
    a_real, a_fake = loss.lecam.anchors().tolist()
    assert a_real == pytest.approx(
        sum(0.99 ** (2 - i) * 0.01 * r for i, (r, _) in enumerate(history)) / (1 - 0.99**3), rel=1e-9
    )
    assert a_fake != a_real


def test_lecam_anchors_round_trip_through_the_loss_state():
    G, D = tiny_networks()
    real, c, z = batch()
    loss = StyleGAN2Loss(torch.device("cpu"), G, D, LossOptions(lecam_weight=1.0, style_mixing_prob=0))
    run_phase(loss, D, "Dmain", real, c, z)
    state = loss.state_dict()
    fresh = StyleGAN2Loss(torch.device("cpu"), G, D, LossOptions(lecam_weight=1.0, style_mixing_prob=0))
    fresh.load_state_dict(state)
    assert torch.equal(fresh.lecam.anchors(), loss.lecam.anchors()) and float(fresh.lecam.steps) == 1
    a = run_phase(loss, D, "Dmain", real, c, z)
    b = run_phase(fresh, D, "Dmain", real, c, z)
    for x, y in zip(a, b):
        assert torch.equal(x, y)
