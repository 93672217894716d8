"""Training loop on the embedded digits at 16x16 with a few channels: outputs, EMA, lazy-reg Adam, resume, NaN stop."""

import dataclasses
import json
import os
import re

import numpy as np
import pytest
import torch

import rlo
from metrics.snapshot_evaluator import SnapshotEvaluator
from training import checkpoint, options
from training import training_loop as training_loop_module
from training.options import AugmentOptions, DataOptions, LossOptions, OptimizerOptions, TrainingOptions
from training.training_loop import NonFiniteError, build_phases, training_loop, update_ema

BATCH = 8


def tiny_options(run_dir, **overrides) -> TrainingOptions:
    """16x16 digits, 4-16 channels, batch 8, two steps per tick, a snapshot every tick."""
    spec = dataclasses.replace(options.CFG_SPECS["tiny"], cbase=64, cmax=16, zdim=16, mb=BATCH, mbstd=4)
    G_kwargs, D_kwargs = options.network_kwargs(spec, resolution=16, channels=3, c_dim=0)
    os.makedirs(run_dir, exist_ok=True)
    opts = TrainingOptions(
        run_dir=str(run_dir),
        cfg="tiny",
        data=DataOptions(path=None, resolution=16, workers=0),
        G_kwargs=G_kwargs,
        D_kwargs=D_kwargs,
        G_opt=OptimizerOptions(lr=0.0025),
        D_opt=OptimizerOptions(lr=0.0025),
        loss=LossOptions(adversarial=rlo.LossConfig("ce"), r1_gamma=0.1),
        augment=AugmentOptions(mode="ada", kimg=1),
        batch_size=BATCH,
        batch_gpu=BATCH,
        ema_kimg=0.01,
        ema_rampup=0.05,
        total_kimg=0.04,
        kimg_per_tick=0.016,
        image_snapshot_ticks=1,
        network_snapshot_ticks=1,
        random_seed=3,
    )
    return dataclasses.replace(opts, **overrides)


def read_stats(run_dir):
    with open(os.path.join(run_dir, "stats.jsonl")) as f:
        return [json.loads(line) for line in f]


def loss_stats(entry):
    return {k: v for k, v in entry.items() if k.startswith(("Loss/", "Progress/"))}


def test_short_run_writes_snapshot_grids_stats_and_tensorboard(tmp_path):
    opts = tiny_options(tmp_path / "run", loss=LossOptions(adversarial=rlo.LossConfig("rlo", k=2), r1_gamma=0.1))
    result = training_loop(opts)
    run = opts.run_dir
    assert result["cur_nimg"] == 40
    for name in ["reals.png", "fakes_init.png", "fakes000000-040.png", "network-snapshot-000000-040.pt"]:
        assert os.path.isfile(os.path.join(run, name)), name
    assert any(name.startswith("events.out.tfevents") for name in os.listdir(run))

    stats = read_stats(run)
    assert [s["Progress/tick"]["mean"] for s in stats] == [0, 1, 2]
    assert [s["Progress/kimg"]["mean"] for s in stats] == pytest.approx([0.008, 0.024, 0.04])
    for key in [
        "Loss/G/loss",
        "Loss/D/loss",
        "Loss/scores/real",
        "Loss/scores/fake",
        "Loss/r1_penalty",
        "Loss/pl_penalty",
    ]:
        assert key in stats[1] or key in stats[0], key
    assert all(np.isfinite(s["Loss/G/loss"]["mean"]) for s in stats)

    data = checkpoint.load_network(result["last_snapshot"])
    state = data["resume_state"]
    assert state["cur_nimg"] == 40 and state["cur_tick"] == 3 and state["batch_idx"] == 5
    assert json.loads(state["training_options_json"])["loss"]["adversarial"]["name"] == "rlo"
    assert data["training_set_kwargs"]["resolution"] == 16
    # G_ema moved away from its initialisation and away from G (EMA, not a copy).
    G, G_ema = data["G"], data["G_ema"]
    assert any(not torch.equal(a, b) for a, b in zip(G.parameters(), G_ema.parameters()))


def test_resume_continues_exactly_like_an_uninterrupted_run(tmp_path):
    straight = tiny_options(tmp_path / "straight")
    training_loop(straight)
    first = tiny_options(tmp_path / "first", total_kimg=0.024)  # stops after tick 1 (3 steps)
    snapshot = training_loop(first)["last_snapshot"]
    resumed = tiny_options(tmp_path / "resumed", resume=snapshot)
    assert training_loop(resumed)["cur_nimg"] == 40

    want = {s["Progress/tick"]["mean"]: loss_stats(s) for s in read_stats(straight.run_dir)}
    got = read_stats(resumed.run_dir)
    assert [s["Progress/tick"]["mean"] for s in got] == [2]
    assert loss_stats(got[0]) == want[2]
    a = checkpoint.load_network(os.path.join(straight.run_dir, "network-snapshot-000000-040.pt"))
    b = checkpoint.load_network(os.path.join(resumed.run_dir, "network-snapshot-000000-040.pt"))
    for name in ["G", "D", "G_ema", "augment_pipe"]:
        for (key, x), (_, y) in zip(a[name].state_dict().items(), b[name].state_dict().items()):
            assert torch.equal(x, y), f"{name}.{key}"
    assert a["resume_state"]["ada"] == b["resume_state"]["ada"]


def test_non_finite_loss_stops_naming_the_phase_and_last_snapshot(tmp_path, monkeypatch):
    from training.loss import StyleGAN2Loss

    original = StyleGAN2Loss.accumulate_gradients

    def poisoned(self, phase, *args, cur_nimg, **kwargs):
        original(self, phase, *args, cur_nimg=cur_nimg, **kwargs)
        if phase == "Dmain" and cur_nimg >= 2 * BATCH:  # after the tick-0 snapshot
            next(self.D.parameters()).grad.fill_(float("nan"))

    monkeypatch.setattr(StyleGAN2Loss, "accumulate_gradients", poisoned)
    opts = tiny_options(tmp_path / "run")
    with pytest.raises(
        NonFiniteError,
        match=r"non-finite gradients in phase Dmain at kimg 0\.016.*"
        r"network-snapshot-000000-008\.pt",
    ):
        training_loop(opts)


def test_mixed_precision_runs_repair_overflowed_gradients_and_count_them(tmp_path, monkeypatch):
    from training.loss import StyleGAN2Loss

    original = StyleGAN2Loss.accumulate_gradients
    poisoned_steps = []

    def overflow(self, phase, *args, cur_nimg, **kwargs):
        original(self, phase, *args, cur_nimg=cur_nimg, **kwargs)
        if phase == "Dmain" and cur_nimg == 2 * BATCH:
            grad = next(self.D.parameters()).grad
            grad.view(-1)[:2] = torch.tensor([float("inf"), float("nan")])
            poisoned_steps.append(cur_nimg)

    monkeypatch.setattr(StyleGAN2Loss, "accumulate_gradients", overflow)
    opts = dataclasses.replace(tiny_options(tmp_path / "run"), repair_nonfinite_grads=True)
    result = training_loop(opts)
    assert poisoned_steps and result["cur_nimg"] >= 3 * BATCH
    D = checkpoint.load_network(result["last_snapshot"])["D"]
    assert all(torch.isfinite(p).all() for p in D.parameters())
    with open(os.path.join(opts.run_dir, "stats.jsonl")) as f:
        counts = [json.loads(line)["Progress/nonfinite_grad_steps"] for line in f]
    assert sum(c["num"] * c["mean"] for c in counts) == 1  # exactly the one poisoned step


def test_infinite_r1_weight_stops_in_dreg_before_any_snapshot(tmp_path):
    opts = tiny_options(tmp_path / "run", loss=LossOptions(r1_gamma=float("inf")))
    with pytest.raises(NonFiniteError, match="non-finite loss in phase Dreg.*no snapshot was saved yet"):
        training_loop(opts)


def test_ema_half_life_with_ramp_up():
    torch.manual_seed(0)
    G, G_ema = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    G.register_buffer("w_avg", torch.ones(2))
    G_ema.register_buffer("w_avg", torch.zeros(2))
    before = [p.detach().clone() for p in G_ema.parameters()]
    opts = TrainingOptions(batch_size=32, ema_kimg=10, ema_rampup=0.05)
    update_ema(G_ema, G, opts, cur_nimg=40_000)  # ramp-up: half-life min(10 000, 0.05 * 40 000) = 2000 images
    beta = 0.5 ** (32 / 2000)
    for new, old, p in zip(G_ema.parameters(), before, G.parameters()):
        torch.testing.assert_close(new, beta * old + (1 - beta) * p)
    assert torch.equal(G_ema.w_avg, G.w_avg)  # buffers are copied, not averaged


def test_lazy_regularisation_rescales_adam_lr_and_betas():
    G, D = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    opts = TrainingOptions(
        G_opt=OptimizerOptions(lr=0.002, betas=(0.0, 0.99)),
        D_opt=OptimizerOptions(lr=0.003),
        G_reg_interval=4,
        D_reg_interval=None,
    )
    phases = build_phases(G, D, opts)
    assert [(p.name, p.interval) for p in phases] == [("Gmain", 1), ("Greg", 4), ("Dboth", 1)]
    group = phases[0].opt.param_groups[0]
    assert group["lr"] == pytest.approx(0.002 * 4 / 5)
    assert group["betas"] == pytest.approx((0.0, 0.99 ** (4 / 5)))
    assert phases[2].opt.param_groups[0]["lr"] == pytest.approx(0.003)


def test_training_options_round_trip_through_json():
    spec = options.CFG_SPECS["paper256"]
    G_kwargs, D_kwargs = options.network_kwargs(spec, 256, 3, 0)
    opts = TrainingOptions(
        G_kwargs=G_kwargs,
        D_kwargs=D_kwargs,
        loss=LossOptions(adversarial=rlo.LossConfig("rlo-eq9", k=3, m=5)),
        G_opt=OptimizerOptions(lr=0.1, betas=(0.5, 0.9)),
        metrics=["fid50k_full"],
    )
    again = TrainingOptions.from_json(opts.to_json())
    assert again == opts
    with pytest.raises(ValueError, match="bogus"):
        TrainingOptions.from_dict(dict(json.loads(opts.to_json()), bogus=1))


def test_resume_from_weights_only_fine_tunes_from_zero(tmp_path):
    """A file without resume_state (e.g. an official .pkl) gives the weights; counters start at 0."""
    from training.networks import Discriminator, Generator

    opts = tiny_options(
        tmp_path / "run",
        total_kimg=0.016,
        G_opt=OptimizerOptions(lr=0.0),
        D_opt=OptimizerOptions(lr=0.0),
        augment=AugmentOptions(mode="noaug"),
    )
    torch.manual_seed(11)
    G, D = Generator(**opts.G_kwargs), Discriminator(**opts.D_kwargs)
    weights = tmp_path / "weights.pt"
    checkpoint.save_snapshot(weights, dict(G=G, D=D, G_ema=G))
    result = training_loop(dataclasses.replace(opts, resume=str(weights)))
    assert result["cur_nimg"] == 16  # from zero, not from a stored counter
    out = checkpoint.load_network(result["last_snapshot"])
    for x, y in zip(D.state_dict().values(), out["D"].state_dict().values()):
        assert torch.equal(x, y)  # lr 0: D is exactly the resumed D
    for x, y in zip(G.parameters(), out["G_ema"].parameters()):
        assert torch.equal(x, y)  # G_ema = EMA of an unchanging G that started equal to it


def test_metrics_are_evaluated_at_snapshots_and_logged(tmp_path):
    opts = tiny_options(tmp_path / "run", total_kimg=0.016, metrics=["cls100"])
    training_loop(opts, evaluate=SnapshotEvaluator(opts.metrics, opts.data.dataset_kwargs(), opts.run_dir))
    lines = (tmp_path / "run" / "metric-cls100.jsonl").read_text().splitlines()
    assert len(lines) == 2  # snapshots at tick 0 and at the end
    result = json.loads(lines[-1])
    assert result["snapshot_pkl"] == "network-snapshot-000000-016.pt"
    assert 0 <= result["results"]["cls100_confident"] <= 1
    stats = read_stats(opts.run_dir)
    assert stats[-1]["Metrics/cls100_confident"]["mean"] == pytest.approx(result["results"]["cls100_confident"])


@pytest.mark.parametrize(
    "loss_opts",
    [
        LossOptions(
            adversarial=rlo.LossConfig("rlo", k=2),
            pairing="relativistic",
            r1_gamma=0.1,
            r2_gamma=0.1,
            lecam_weight=0.01,
        ),
        LossOptions(adversarial=rlo.LossConfig("hinge"), r1_gamma=0.1, lecam_weight=0.01),
    ],
    ids=["rlo-rel-r2-lecam", "hinge-lecam"],
)
def test_resume_with_the_new_switches_continues_exactly(tmp_path, loss_opts):
    straight = tiny_options(tmp_path / "straight", loss=loss_opts, D_reg_interval=2)
    training_loop(straight)
    first = tiny_options(tmp_path / "first", loss=loss_opts, D_reg_interval=2, total_kimg=0.024)
    snapshot = training_loop(first)["last_snapshot"]
    state = checkpoint.load_network(snapshot)["resume_state"]["loss_state"][0]
    assert float(state["lecam"]["steps"]) == 3  # one anchor update per D step so far
    resumed = tiny_options(tmp_path / "resumed", loss=loss_opts, D_reg_interval=2, resume=snapshot)
    training_loop(resumed)
    want = {s["Progress/tick"]["mean"]: loss_stats(s) for s in read_stats(straight.run_dir)}
    got = read_stats(resumed.run_dir)
    assert loss_stats(got[0]) == want[2]
    assert "Loss/lecam_penalty" in got[0] and ("Loss/r2_penalty" in got[0]) == (loss_opts.r2_gamma > 0)
    a = checkpoint.load_network(os.path.join(straight.run_dir, "network-snapshot-000000-040.pt"))
    b = checkpoint.load_network(os.path.join(resumed.run_dir, "network-snapshot-000000-040.pt"))
    for name in ["G", "D", "G_ema"]:
        for (key, x), (_, y) in zip(a[name].state_dict().items(), b[name].state_dict().items()):
            assert torch.equal(x, y), f"{name}.{key}"


@pytest.mark.parametrize("keep", ["latest", "all"])
def test_only_the_latest_snapshot_keeps_the_optimizer_state_unless_all_are_asked_for(tmp_path, keep):
    opts = tiny_options(tmp_path / "run", optimizer_snapshots=keep)
    training_loop(opts)
    snapshots = sorted((tmp_path / "run").glob("network-snapshot-*.pt"))
    assert [s.name for s in snapshots] == [
        "network-snapshot-000000-008.pt",
        "network-snapshot-000000-024.pt",
        "network-snapshot-000000-040.pt",
    ]
    kept = [checkpoint.load_network(s)["has_optimizer_state"] for s in snapshots]
    assert kept == ([False, False, True] if keep == "latest" else [True, True, True])
    if keep == "latest":
        assert snapshots[0].stat().st_size < 0.7 * snapshots[-1].stat().st_size


def test_resume_from_a_snapshot_without_optimizer_state_says_so_and_continues(tmp_path, capsys):
    first = tiny_options(tmp_path / "first")
    training_loop(first)
    stripped = tmp_path / "first" / "network-snapshot-000000-024.pt"
    assert not checkpoint.load_network(stripped)["has_optimizer_state"]
    resumed = tiny_options(tmp_path / "resumed", resume=str(stripped), total_kimg=0.048)
    assert training_loop(resumed)["cur_nimg"] == 48
    assert "the snapshot holds no optimizer state" in capsys.readouterr().out


def test_long_ticks_print_progress_lines_at_a_steady_interval(tmp_path, monkeypatch, capsys):
    """Within a tick a line appears whenever PROGRESS_SEC have passed (0 here: after every step but a tick's last),
    with the tick, its images so far and the speed; the training itself is unchanged."""
    monkeypatch.setattr(training_loop_module, "PROGRESS_SEC", 0.0)
    training_loop(tiny_options(tmp_path / "run", total_kimg=0.032))
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("  tick ")]
    assert lines and all(re.fullmatch(r"  tick \d+: \d\.\d{3} of 0\.016 kimg, [\d.]+ s/kimg so far", x) for x in lines)
    assert "  tick 1: 0.008 of 0.016 kimg" in lines[0]
