"""The StyleGAN2(-ADA) training loop: phases Gmain, Greg, Dmain, Dreg; G_ema; ADA; ticks, snapshots, metrics.

Determinism and resume: every process draws latents and conditioning labels from one shared generator (seeded by
--seed), reads its slice of a position-addressed image stream (training/sampler.py) and keeps its own device RNG
for noise, style mixing and augmentation. A snapshot holds all of that state, so a resumed run continues exactly
where the snapshot was taken (bit for bit on CPU). Everything done at a tick's end leaves the RNGs untouched.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import os
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch

from dnnlib import util as dnnlib_util
from torch_utils import distributed, misc, training_stats
from torch_utils.distributed import DistContext
from torch_utils.ops import conv2d_gradfix
from training import checkpoint, image_grid
from training.augment import AUGPIPE_SPECS, AdaController, AugmentPipe
from training.dataset import open_dataset
from training.diffaugment import DiffAugment
from training.loss import StyleGAN2Loss
from training.networks import Discriminator, Generator
from training.options import TrainingOptions
from training.sampler import StreamSampler

RESUME_STATE_VERSION = 1
PROGRESS_SEC = 60.0  # within a tick, a progress line at most this often (a 1 kimg tick can take minutes on a CPU)
Evaluator = Callable[[torch.nn.Module, str, DistContext, torch.device], dict[str, float]]


class NonFiniteError(RuntimeError):
    """A loss or gradient became NaN/inf; the message names the phase and the last good snapshot."""


@dataclasses.dataclass
class Phase:
    name: str  # 'Gmain', 'Greg', 'Gboth', 'Dmain', 'Dreg' or 'Dboth'
    module: torch.nn.Module
    opt: torch.optim.Optimizer
    interval: int  # run every `interval` minibatches


def snapshot_stem(cur_nimg: int, kimg_per_tick: float, total_kimg: float = 1) -> str:
    """'000012' (kimg), or '000012-512' (kimg-images) when kimg alone could repeat: ticks shorter than 1 kimg, or a
    run ending at a fraction of a kimg (12.5 kimg: the last tick and the end both fall in kimg 12)."""
    stem = f"{cur_nimg // 1000:06d}"
    fine = kimg_per_tick < 1 or round(total_kimg * 1000) % 1000 != 0
    return f"{stem}-{cur_nimg % 1000:03d}" if fine else stem


def snapshot_name(cur_nimg: int, kimg_per_tick: float = 1, total_kimg: float = 1) -> str:
    return f"network-snapshot-{snapshot_stem(cur_nimg, kimg_per_tick, total_kimg)}.pt"


def build_phases(G: torch.nn.Module, D: torch.nn.Module, opts: TrainingOptions) -> list[Phase]:
    """Adam per network; with lazy regularisation, lr and betas are rescaled by interval / (interval + 1)."""
    phases = []
    for prefix, module, opt_opts, reg_interval in [
        ("G", G, opts.G_opt, opts.G_reg_interval),
        ("D", D, opts.D_opt, opts.D_reg_interval),
    ]:
        ratio = 1.0 if reg_interval is None else reg_interval / (reg_interval + 1)
        opt = torch.optim.Adam(
            module.parameters(),
            lr=opt_opts.lr * ratio,
            betas=tuple(beta**ratio for beta in opt_opts.betas),
            eps=opt_opts.eps,
        )
        if reg_interval is None:
            phases.append(Phase(prefix + "both", module, opt, 1))
        else:
            phases += [Phase(prefix + "main", module, opt, 1), Phase(prefix + "reg", module, opt, reg_interval)]
    return phases


@contextlib.contextmanager
def rng_unchanged() -> Iterator[None]:
    """Whatever runs inside (grids, metrics) leaves the python/numpy/torch/CUDA RNG states as they were."""
    state = checkpoint.capture_rng_state()
    try:
        yield
    finally:
        checkpoint.restore_rng_state(state)


def seed_process_rngs(seed: int) -> None:
    import random

    random.seed(seed)
    np.random.seed(seed % (1 << 32))
    torch.manual_seed(seed)


def update_ema(G_ema: torch.nn.Module, G: torch.nn.Module, opts: TrainingOptions, cur_nimg: int) -> None:
    """G_ema <- lerp(G, G_ema, beta) with half-life ema_kimg (ramped up to ema_rampup * images seen)."""
    ema_nimg = opts.ema_kimg * 1000
    if opts.ema_rampup is not None:
        ema_nimg = min(ema_nimg, cur_nimg * opts.ema_rampup)
    ema_beta = 0.5 ** (opts.batch_size / max(ema_nimg, 1e-8))
    with torch.no_grad():  # one in-place pass over all parameters (a lerp into a copy and a copy back took two)
        torch._foreach_lerp_(list(G_ema.parameters()), list(G.parameters()), 1.0 - ema_beta)
        for b_ema, b in zip(G_ema.buffers(), G.buffers()):
            b_ema.copy_(b)


def gather_resume_state(
    opts: TrainingOptions,
    phases: list[Phase],
    loss: StyleGAN2Loss,
    ada: AdaController | None,
    latent_gen: torch.Generator,
    cur_nimg: int,
    next_tick: int,
    batch_idx: int,
    total_sec: float,
) -> dict[str, Any]:
    """Everything beyond the weights that the next step depends on (collective: every process calls it)."""
    G_opt, D_opt = [p.opt for p in phases if p.name.endswith(("main", "both"))]
    ada_state = None
    if ada is not None:
        ada_state = ada.state_dict()
        pending = torch.tensor(ada_state["stats"], dtype=torch.float64, device=loss.device)
        ada_state["stats"] = distributed.all_reduce_sum(pending).tolist()  # restored on rank 0 only
    return dict(
        version=RESUME_STATE_VERSION,
        cur_nimg=cur_nimg,
        cur_tick=next_tick,
        batch_idx=batch_idx,
        G_opt=G_opt.state_dict(),
        D_opt=D_opt.state_dict(),
        loss_state=distributed.all_gather_object(loss.state_dict()),  # per process, like the RNGs
        ada=ada_state,
        latent_gen=latent_gen.get_state(),
        rng=distributed.all_gather_object(checkpoint.capture_rng_state()),
        num_gpus=opts.num_gpus,
        batch_size=opts.batch_size,
        random_seed=opts.random_seed,
        total_sec=float(total_sec),
        training_options_json=opts.to_json(),
    )


def apply_resume_state(
    state: dict[str, Any],
    opts: TrainingOptions,
    ctx: DistContext,
    phases: list[Phase],
    loss: StyleGAN2Loss,
    ada: AdaController | None,
    latent_gen: torch.Generator,
) -> list[str]:
    """Restore gather_resume_state()'s output (RNGs excepted: see training_loop); returns warnings to print."""
    warnings = []
    if state.get("version") != RESUME_STATE_VERSION:
        raise ValueError(
            f"--resume: resume_state version {state.get('version')!r}; this code reads {RESUME_STATE_VERSION}"
        )
    for key, ours in [("num_gpus", opts.num_gpus), ("batch_size", opts.batch_size), ("random_seed", opts.random_seed)]:
        if state[key] != ours:
            warnings.append(
                f"the snapshot was trained with {key}={state[key]}, this run uses {ours}: it continues "
                "from the snapshot but will not replicate an uninterrupted run"
            )
    G_opt, D_opt = [p.opt for p in phases if p.name.endswith(("main", "both"))]
    if state.get("G_opt") is not None and state.get("D_opt") is not None:
        G_opt.load_state_dict(state["G_opt"])
        D_opt.load_state_dict(state["D_opt"])
    else:
        warnings.append(
            "the snapshot holds no optimizer state (only the latest snapshot of a run keeps it; see "
            "--optim-state): Adam restarts from zero moments, so the run continues but not bit-exactly"
        )
    if "loss_state" in state:  # per process; a run on another process count takes rank 0's
        per_rank = state["loss_state"]
        loss.load_state_dict(per_rank[ctx.rank] if len(per_rank) == ctx.world_size else per_rank[0])
    else:  # snapshots written before the loss had more state than the path-length mean
        loss.pl_mean.copy_(state["pl_mean"])
    if ada is not None and state["ada"] is not None:
        ada_state = dict(state["ada"])
        if not ctx.is_main:
            ada_state["stats"] = [0.0, 0.0]
        ada.load_state_dict(ada_state)
    latent_gen.set_state(state["latent_gen"])
    return warnings


def current_memory_gb(device: torch.device) -> tuple[float, float]:
    """(peak process RSS, peak CUDA memory allocated) in GB; 0 where not measurable."""
    cpu = 0.0
    try:
        import resource

        cpu = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KB on Linux
    except (ImportError, AttributeError):
        pass
    gpu = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else 0.0
    return cpu, gpu


def report_tick(
    cur_tick: int,
    cur_nimg: int,
    tick_nimg: int,
    total_sec: float,
    tick_sec: float,
    maintenance_sec: float,
    ada: AdaController | None,
    device: torch.device,
    is_main: bool,
) -> None:
    """The tick line (rank 0) and the Progress/Timing/Resources statistics of stats.jsonl."""
    cpu_mem, gpu_mem = current_memory_gb(device)
    augment_p = ada.p if ada is not None else 0.0
    sec_per_kimg = tick_sec / tick_nimg * 1000
    for name, value in [
        ("Progress/tick", cur_tick),
        ("Progress/kimg", cur_nimg / 1000),
        ("Progress/augment", augment_p),
        ("Timing/total_sec", total_sec),
        ("Timing/sec_per_tick", tick_sec),
        ("Timing/sec_per_kimg", sec_per_kimg),
        ("Timing/maintenance_sec", maintenance_sec),
        ("Resources/peak_cpu_mem_gb", cpu_mem),
        ("Resources/peak_gpu_mem_gb", gpu_mem),
    ]:
        training_stats.report0(name, value)
    if is_main:
        print(
            f"tick {cur_tick:<5d} kimg {cur_nimg / 1000:<8.3f} time {dnnlib_util.format_time(total_sec):<12s} "
            f"sec/tick {tick_sec:<7.1f} sec/kimg {sec_per_kimg:<7.2f} maintenance {maintenance_sec:<6.1f} "
            f"cpumem {cpu_mem:<6.2f} gpumem {gpu_mem:<6.2f} augment {augment_p:.3f}",
            flush=True,
        )


def open_tensorboard(run_dir: str):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as err:
        print(f"Skipping TensorBoard export: {err}")
        return None
    return SummaryWriter(run_dir)


def build_networks(
    opts: TrainingOptions, device: torch.device, resume_data: dict[str, Any] | None, verbose: bool
) -> tuple[torch.nn.Module, torch.nn.Module, torch.nn.Module, AugmentPipe | None, AdaController | None]:
    """G, D, G_ema, augment pipe and its ADA controller: identical on every process, resumed weights if given."""
    seed_process_rngs(opts.random_seed)
    G = Generator(**opts.G_kwargs).train().requires_grad_(False).to(device)
    D = Discriminator(**opts.D_kwargs).train().requires_grad_(False).to(device)
    G_ema = copy.deepcopy(G).eval()
    augment_pipe, ada = None, None
    if opts.augment.mode == "diffaug":  # stateless: rebuilt from the options, not stored in snapshots
        augment_pipe = DiffAugment(opts.augment.diffaug_policy)
    elif opts.augment.mode != "noaug":
        augment_pipe = AugmentPipe(**AUGPIPE_SPECS[opts.augment.pipe]).train().requires_grad_(False).to(device)
        target = opts.augment.target if opts.augment.mode == "ada" else None
        ada = AdaController(
            augment_pipe,
            batch_size=opts.batch_size,
            target=target,
            p=opts.augment.p,
            interval=opts.augment.interval,
            kimg=opts.augment.kimg,
        )
    if resume_data is not None:
        full = resume_data.get("resume_state") is not None
        if verbose:
            print(f'Resuming from "{opts.resume}"' + (" (full training state)" if full else " (weights only)"))
        for name, module in [("G", G), ("D", D), ("G_ema", G_ema), ("augment_pipe", augment_pipe)]:
            if module is not None and resume_data.get(name) is not None:
                misc.copy_params_and_buffers(resume_data[name], module, require_all=full)
    for module in [G, D, G_ema, augment_pipe]:
        if isinstance(module, torch.nn.Module):
            distributed.broadcast_module(module)
    if verbose:
        z = torch.zeros([opts.batch_gpu, G.z_dim], device=device)
        c = torch.zeros([opts.batch_gpu, G.c_dim], device=device)
        img = misc.print_module_summary(G, [z, c])
        misc.print_module_summary(D, [img, c])
    return G, D, G_ema, augment_pipe, ada


class SnapshotGrid:
    """Fixed reals and latents for the image grids (rank 0): reals.png now, fakes*.png on demand."""

    def __init__(self, training_set: torch.utils.data.Dataset, z_dim: int, opts: TrainingOptions, device: torch.device):
        self.run_dir = opts.run_dir
        self.size = image_grid.grid_shape(training_set.resolution)
        labels = np.stack([training_set.get_label(i) for i in range(len(training_set))])
        indices = image_grid.snapshot_grid_indices(labels, len(training_set), self.size, opts.random_seed)
        reals = np.stack([training_set[int(i)][0] for i in indices])
        image_grid.save_image_grid(reals, os.path.join(self.run_dir, "reals.png"), (0, 255), self.size)
        gen = torch.Generator().manual_seed(opts.random_seed)
        self.z = torch.randn([len(indices), z_dim], generator=gen).to(device).split(opts.batch_gpu)
        self.c = torch.from_numpy(labels[indices]).to(device).split(opts.batch_gpu)

    @torch.no_grad()
    def save_fakes(self, G_ema: torch.nn.Module, name: str) -> None:
        images = torch.cat([G_ema(z, c, noise_mode="const").cpu() for z, c in zip(self.z, self.c)]).numpy()
        image_grid.save_image_grid(images, os.path.join(self.run_dir, name), drange=(-1, 1), grid_size=self.size)


def write_stats(
    stats: dict[str, dict[str, float]], stats_jsonl, stats_tfevents, cur_nimg: int, start_time: float
) -> None:
    """One stats.jsonl line per tick; TensorBoard scalars at step = kimg."""
    timestamp = time.time()
    stats_jsonl.write(json.dumps(dict(stats, timestamp=timestamp)) + "\n")
    stats_jsonl.flush()
    if stats_tfevents is not None:
        for name, value in stats.items():
            stats_tfevents.add_scalar(
                name, value["mean"], global_step=int(cur_nimg / 1e3), walltime=timestamp - start_time
            )
        stats_tfevents.flush()


def start_loop_rngs(
    resume_state: dict[str, Any] | None, opts: TrainingOptions, ctx: DistContext, cur_nimg: int
) -> None:
    """Per-process RNGs of the loop (noise, style mixing, augmentation, path-length noise): restored or seeded."""
    if resume_state and len(resume_state["rng"]) == ctx.world_size:
        checkpoint.restore_rng_state(resume_state["rng"][ctx.rank])
        return
    if resume_state and ctx.is_main:
        print(
            f"Warning: the snapshot holds RNG states of {len(resume_state['rng'])} processes, this run has "
            f"{ctx.world_size}; reseeding"
        )
    seed_process_rngs((opts.random_seed * ctx.world_size + ctx.rank) * 1000003 + cur_nimg // opts.batch_size)


def training_loop(
    opts: TrainingOptions,
    ctx: DistContext = DistContext(),
    device: torch.device = torch.device("cpu"),
    resume_data: dict[str, Any] | None = None,
    evaluate: Evaluator | None = None,
) -> dict[str, Any]:
    """Train as `opts` says, writing to opts.run_dir (rank 0). Returns {'cur_nimg', 'last_snapshot'}.

    resume_data: checkpoint.load_network(opts.resume) when the caller has loaded it already (else loaded here).
    evaluate: called at every snapshot with (G_ema, snapshot path, ctx, device), collectively on all processes;
    returns {name: value}, logged as Metrics/<name> (train.py passes metrics.snapshot_evaluator's evaluator).
    """
    start_time = process_start = time.time()
    is_main = ctx.is_main
    B, W = opts.batch_size, ctx.world_size
    torch.backends.cudnn.benchmark = opts.cudnn_benchmark
    torch.backends.cuda.matmul.allow_tf32 = opts.allow_tf32
    torch.backends.cudnn.allow_tf32 = opts.allow_tf32
    conv2d_gradfix.enabled = True
    training_stats.reset()
    training_stats.init_multiprocessing(rank=ctx.rank, sync_device=device if device.type == "cuda" else None)

    # ------------------------------------------------------------------ Setup: data, networks, loss, state.
    training_set = open_dataset(**opts.data.dataset_kwargs())
    if opts.resume and resume_data is None:
        resume_data = checkpoint.load_network(opts.resume)
    resume_state = resume_data.get("resume_state") if resume_data else None
    cur_nimg = int(resume_state["cur_nimg"]) if resume_state else 0
    start_time -= float(resume_state.get("total_sec", 0.0)) if resume_state else 0.0  # elapsed time carries over
    if is_main:
        print(
            f"Dataset: {training_set.name}, {len(training_set)} images, shape {training_set.image_shape}, "
            f"label dim {training_set.label_dim}"
        )

    G, D, G_ema, augment_pipe, ada = build_networks(opts, device, resume_data, verbose=is_main)
    ada_pipe = augment_pipe if isinstance(augment_pipe, AugmentPipe) else None  # the pipe with state to save
    loss = StyleGAN2Loss(
        device, G, D, opts.loss, augment_pipe=augment_pipe, observe_real_logits=ada.observe if ada is not None else None
    )
    phases = build_phases(G, D, opts)
    latent_gen = torch.Generator().manual_seed(opts.random_seed)  # shared by all processes: z and c of every step
    cur_tick, batch_idx = 0, 0
    if resume_state:
        for warning in apply_resume_state(resume_state, opts, ctx, phases, loss, ada, latent_gen):
            if is_main:
                print(f"Warning: {warning}")
        cur_tick, batch_idx = int(resume_state["cur_tick"]), int(resume_state["batch_idx"])

    sampler = StreamSampler(len(training_set), B, rank=ctx.rank, world_size=W, seed=opts.random_seed, start=cur_nimg)
    loader = torch.utils.data.DataLoader(
        training_set,
        sampler=sampler,
        batch_size=B // W,
        num_workers=opts.data.workers,
        pin_memory=device.type == "cuda",
        prefetch_factor=2 if opts.data.workers > 0 else None,
        generator=torch.Generator().manual_seed(opts.random_seed),
    )

    # ------------------------------------------------------------------ Logs: grids, stats, TensorBoard.
    grid = stats_jsonl = stats_tfevents = None
    if is_main:
        grid = SnapshotGrid(training_set, G.z_dim, opts, device)
        if not resume_state:
            grid.save_fakes(G_ema, "fakes_init.png")
        stats_jsonl = open(os.path.join(opts.run_dir, "stats.jsonl"), "a")
        stats_tfevents = open_tensorboard(opts.run_dir)
    stats_collector = training_stats.Collector(regex=".*", keep_previous=False)

    start_loop_rngs(resume_state, opts, ctx, cur_nimg)

    # ------------------------------------------------------------------ Train.
    if is_main:
        print(f"Training for {opts.total_kimg:g} kimg from {cur_nimg / 1000:g} kimg...\n")
    tick_start_nimg, tick_start_time = cur_nimg, time.time()
    last_progress = tick_start_time
    maintenance_time = tick_start_time - process_start  # set-up of this process, not the elapsed time carried over
    last_snapshot: str | None = None
    data_iter = iter(loader)
    while True:
        # Fetch this process's reals and the step's shared latents; split into accumulation rounds.
        real_img, real_c = next(data_iter)  # a damaged image: DatasetError naming it
        real_img = (real_img.to(device).to(torch.float32) / 127.5 - 1).split(opts.batch_gpu)
        real_c = real_c.to(device).split(opts.batch_gpu)
        all_z = torch.randn([len(phases), B, G.z_dim], generator=latent_gen)
        c_idx = torch.randint(len(training_set), [len(phases) * B], generator=latent_gen).tolist()
        all_c = torch.from_numpy(np.stack([training_set.get_label(i) for i in c_idx]))
        all_c = all_c.reshape(len(phases), B, training_set.label_dim)
        mine = slice(ctx.rank * (B // W), (ctx.rank + 1) * (B // W))

        # Phases: each runs every `interval` steps and ends with one optimiser step.
        for phase, phase_z, phase_c in zip(phases, all_z, all_c):
            if batch_idx % phase.interval != 0:
                continue
            phase.opt.zero_grad(set_to_none=True)
            phase.module.requires_grad_(True)
            rounds = zip(
                real_img,
                real_c,
                phase_z[mine].to(device).split(opts.batch_gpu),
                phase_c[mine].to(device).split(opts.batch_gpu),
            )
            for round_img, round_c, gen_z, gen_c in rounds:
                loss.accumulate_gradients(
                    phase.name,
                    round_img,
                    round_c,
                    gen_z,
                    gen_c,
                    gain=phase.interval / opts.num_rounds,
                    cur_nimg=cur_nimg,
                )
            phase.module.requires_grad_(False)
            flat = distributed.average_gradients(phase.module.parameters(), extra=loss.nonfinite)
            loss_finite, grads_finite = float(flat[-1]) == 0, misc.all_finite(flat[:-1])
            if not loss_finite or not (grads_finite or opts.repair_nonfinite_grads):
                what = "gradients" if loss_finite else "loss"
                where = f"the last good snapshot is {last_snapshot}" if last_snapshot else "no snapshot was saved yet"
                raise NonFiniteError(
                    f"non-finite {what} in phase {phase.name} at kimg {cur_nimg / 1000:.3f} "
                    f"(tick {cur_tick}); {where}. Resume from it with --resume, e.g. with a "
                    f"lower --glr/--dlr or a different --gamma."
                )
            if not grads_finite:  # float16 overflow in a few entries (opts.repair_nonfinite_grads)
                for param in phase.module.parameters():
                    if param.grad is not None:
                        torch.nan_to_num(param.grad, nan=0, posinf=1e5, neginf=-1e5, out=param.grad)
            training_stats.report("Progress/nonfinite_grad_steps", float(not grads_finite))
            phase.opt.step()

        # G_ema, counters, ADA.
        update_ema(G_ema, G, opts, cur_nimg)
        cur_nimg += B
        batch_idx += 1
        if ada is not None:
            ada.step()

        # End of tick?
        done = cur_nimg >= round(opts.total_kimg * 1000)
        if not done and cur_tick != 0 and cur_nimg < tick_start_nimg + round(opts.kimg_per_tick * 1000):
            now = time.time()
            if is_main and now - last_progress >= PROGRESS_SEC:  # long ticks show life, terminal or not
                last_progress = now
                seen = (cur_nimg - tick_start_nimg) / 1000
                print(
                    f"  tick {cur_tick}: {seen:.3f} of {opts.kimg_per_tick:g} kimg, "
                    f"{(now - tick_start_time) / max(seen, 1e-9):.1f} s/kimg so far",
                    flush=True,
                )
            continue
        tick_end_time = time.time()
        with rng_unchanged():
            report_tick(
                cur_tick,
                cur_nimg,
                cur_nimg - tick_start_nimg,
                tick_end_time - start_time,
                tick_end_time - tick_start_time,
                maintenance_time,
                ada,
                device,
                is_main,
            )
            if is_main and opts.image_snapshot_ticks and (done or cur_tick % opts.image_snapshot_ticks == 0):
                grid.save_fakes(G_ema, f"fakes{snapshot_stem(cur_nimg, opts.kimg_per_tick, opts.total_kimg)}.png")

            distributed.average_buffers(G)  # w_avg: each process tracked its own latents
            distributed.average_buffers(G_ema)
            snapshot_path = None
            if opts.network_snapshot_ticks and (done or cur_tick % opts.network_snapshot_ticks == 0):
                state = gather_resume_state(
                    opts, phases, loss, ada, latent_gen, cur_nimg, cur_tick + 1, batch_idx, tick_end_time - start_time
                )
                snapshot_path = os.path.join(opts.run_dir, snapshot_name(cur_nimg, opts.kimg_per_tick, opts.total_kimg))
                if is_main:
                    checkpoint.save_snapshot(
                        snapshot_path,
                        dict(G=G, D=D, G_ema=G_ema, augment_pipe=ada_pipe),
                        training_set_kwargs=opts.data.dataset_kwargs(),
                        resume_state=state,
                        overwrite=False,
                    )
                    if last_snapshot is not None and opts.optimizer_snapshots == "latest":
                        checkpoint.strip_optimizer_state(last_snapshot)  # only the latest needs the Adam moments
                last_snapshot = snapshot_path

            if snapshot_path is not None and evaluate is not None:
                for name, value in evaluate(G_ema, snapshot_path, ctx, device).items():
                    training_stats.report0(f"Metrics/{name}", value)

            stats_collector.update()
            if is_main:
                write_stats(stats_collector.as_dict(), stats_jsonl, stats_tfevents, cur_nimg, start_time)

        cur_tick += 1
        tick_start_nimg, tick_start_time = cur_nimg, time.time()
        last_progress = tick_start_time
        maintenance_time = tick_start_time - tick_end_time
        if done:
            break

    if is_main:
        stats_jsonl.close()
        if stats_tfevents is not None:
            stats_tfevents.close()
        print("\nExiting...")
    return dict(cur_nimg=cur_nimg, last_snapshot=last_snapshot)
