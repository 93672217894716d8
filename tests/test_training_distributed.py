"""Data-parallel training: two gloo processes on CPU give what one process gives with the same total batch.

Per-process randomness (synthesis noise, style mixing, path-length noise, augmentation) is drawn from each
process's own RNG, so those are switched off here; latents, labels and images are shared by design.
"""

import dataclasses
import os

import torch
import torch.multiprocessing as mp

import rlo
from torch_utils import distributed
from torch_utils.distributed import DistContext
from training import checkpoint, options
from training.options import AugmentOptions, DataOptions, LossOptions, TrainingOptions
from training.training_loop import training_loop

BATCH = 8


def deterministic_options(run_dir, batch_gpu, num_gpus=1) -> TrainingOptions:
    spec = dataclasses.replace(options.CFG_SPECS["tiny"], cbase=64, cmax=16, zdim=16, mb=BATCH, mbstd=1)
    G_kwargs, D_kwargs = options.network_kwargs(spec, resolution=16, channels=3, c_dim=0)
    G_kwargs["synthesis_kwargs"]["use_noise"] = False
    os.makedirs(run_dir, exist_ok=True)
    return TrainingOptions(
        run_dir=str(run_dir),
        data=DataOptions(path=None, resolution=16, workers=0),
        G_kwargs=G_kwargs,
        D_kwargs=D_kwargs,
        loss=LossOptions(adversarial=rlo.LossConfig("rlo", k=2), r1_gamma=0.5, style_mixing_prob=0, pl_weight=0),
        augment=AugmentOptions(mode="noaug"),
        num_gpus=num_gpus,
        batch_size=BATCH,
        batch_gpu=batch_gpu,
        ema_kimg=0.01,
        ema_rampup=0.05,
        total_kimg=0.04,
        kimg_per_tick=0.016,
        image_snapshot_ticks=None,
        network_snapshot_ticks=10,
        random_seed=5,
    )


def _worker(rank: int, opts_json: str, init_file: str) -> None:
    torch.set_num_threads(1)
    ctx = DistContext(rank=rank, world_size=2, local_rank=rank)
    distributed.init_process_group(ctx, torch.device("cpu"), f"file://{init_file}")
    try:
        training_loop(TrainingOptions.from_json(opts_json), ctx, torch.device("cpu"))
    finally:
        distributed.destroy_process_group()


def final_snapshot(opts):
    return checkpoint.load_network(os.path.join(opts.run_dir, "network-snapshot-000000-040.pt"))


def assert_same_networks(a, b, atol, skip=()):
    for name in ["G", "D", "G_ema"]:
        for (key, x), y in zip(a[name].state_dict().items(), b[name].state_dict().values()):
            if key.endswith(skip):
                continue
            torch.testing.assert_close(y, x, rtol=0, atol=atol, msg=lambda m: f"{name}.{key}: {m}")


def test_gradient_accumulation_matches_one_big_pass(tmp_path):
    one_pass = deterministic_options(tmp_path / "one", batch_gpu=BATCH)
    two_passes = deterministic_options(tmp_path / "two", batch_gpu=BATCH // 2)
    training_loop(one_pass)
    training_loop(two_passes)
    # w_avg is excepted: it moves once per G forward pass, i.e. once per round (as in the official code).
    assert_same_networks(final_snapshot(one_pass), final_snapshot(two_passes), atol=2e-5, skip=("w_avg",))


def test_two_gloo_processes_match_one_process_with_the_same_total_batch(tmp_path):
    single = deterministic_options(tmp_path / "single", batch_gpu=BATCH)
    training_loop(single)
    double = deterministic_options(tmp_path / "double", batch_gpu=BATCH // 2, num_gpus=2)
    mp.spawn(_worker, args=(double.to_json(), str(tmp_path / "rendezvous")), nprocs=2)

    a, b = final_snapshot(single), final_snapshot(double)
    assert b["resume_state"]["cur_nimg"] == a["resume_state"]["cur_nimg"] == 40
    assert len(b["resume_state"]["rng"]) == 2  # both processes' RNG states are kept for resuming
    assert_same_networks(a, b, atol=2e-5)
    # ... and the equality is not that of two untrained copies: training moved the weights by far more than atol.
    from training.training_loop import seed_process_rngs

    seed_process_rngs(single.random_seed)
    G0 = a["G"].__class__(**a["G"].init_kwargs)
    moved = max(float((p - q).detach().abs().max()) for p, q in zip(a["G"].parameters(), G0.parameters()))
    assert moved > 1e-3
