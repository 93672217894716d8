"""One classifier run, (model, loss, seed) -> its per-epoch history: optimiser, warm-up + cosine schedule, mixed
precision, gradient clipping, multi-process gradient sums, per-epoch atomic checkpoints with exact resume, and
TensorBoard + CSV logs.

The paired-seed protocol: the initial network is a function of (seed, model, data shape) only, and the batches of
an epoch of (seed, epoch) only (:mod:`experiments.classify_data`), so for a seed every loss starts from the same
weights and sees the same batches and augmentations; the losses differ in nothing but the objective.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import io
import json
import math
import pathlib
import sys
import time
from collections.abc import Callable

import torch
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

import rlo
from dnnlib.files import atomic_write
from experiments.classifier_models import load_pretrained, make_classifier, parameter_count, reader_error
from experiments.classify_data import AugmentSettings
from experiments.classify_dist import Dist

OPTIMIZERS = ("adamw", "adam", "sgd")
SCHEDULES = ("cosine", "constant")
PRECISIONS = ("fp32", "bf16", "fp16")
EVAL_BATCH = 1000
CHECKPOINT = "checkpoint.pt"
CHECKPOINT_FORMAT = 1


@dataclasses.dataclass(frozen=True)
class TrainSettings:
    """Everything but the loss and the seed that decides a run; JSON-able (checkpoints keep it to refuse resuming
    with other settings)."""

    model: str = "small-cnn"
    epochs: int = 30
    batch: int = 64  # global: split over the processes of a multi-process run
    optimizer: str = "adamw"
    lr: float = 1e-3  # peak, after warm-up
    weight_decay: float = 0.01  # decoupled for AdamW, L2 for Adam/SGD; on every parameter
    momentum: float = 0.9  # SGD only (Nesterov off)
    schedule: str = "cosine"  # per step, from lr down to 0 at the last step
    warmup_epochs: float = 0.0  # linear warm-up from lr/steps to lr
    clip_grad: float | None = None  # max global L2 norm of the gradient
    augment: AugmentSettings = AugmentSettings()
    precision: str = "fp32"  # autocast dtype on the device; fp16 adds a GradScaler
    channels_last: bool = False
    image_size: int = 32
    pretrained: str | None = None  # a local checkpoint to fine-tune from (all but the head)
    workers: int = 0  # DataLoader processes for image folders
    model_kwargs: tuple[tuple[str, object], ...] = ()  # extra timm kwargs (tests shrink models with them)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True, default=list)


@dataclasses.dataclass
class EpochRecord:
    epoch: int  # 0 = the initial network, before any step
    train_loss: float  # mean of the run's own objective over the epoch's batches (nan at epoch 0)
    train_ce: float  # mean CE on the same batches, same forward pass (nan at epoch 0)
    train_acc: float  # running accuracy on the epoch's (augmented) batches, as the paper's code reports
    test_acc: float  # fraction in [0, 1] after the epoch
    test_ce: float
    test_loss: float  # the run's own objective on the test split
    lr: float  # learning rate at the epoch's last step
    epoch_time_s: float  # training wall time of this epoch, evaluation excluded
    wall_s: float  # cumulative training wall time


@dataclasses.dataclass
class RunHistory:
    loss: rlo.LossConfig
    seed: int
    epochs: list[EpochRecord]
    model: str = "small-cnn"
    parameters: int = 0


class WarmupCosine:
    """LambdaLR factor at step s: linear warm-up (s+1)/W for W steps, then 0.5 (1 + cos(pi t)) with t going 0 -> 1
    over the remaining steps (constant 1 after warm-up for schedule 'constant'). A plain object, so LambdaLR's
    state_dict keeps it."""

    def __init__(self, total_steps: int, warmup_steps: int, schedule: str):
        self.total_steps, self.warmup_steps, self.schedule = total_steps, warmup_steps, schedule

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        if self.schedule == "constant":
            return 1.0
        span = max(self.total_steps - self.warmup_steps, 1)
        return 0.5 * (1 + math.cos(math.pi * min(step - self.warmup_steps, span) / span))


def make_optimizer(settings: TrainSettings, net: torch.nn.Module) -> torch.optim.Optimizer:
    params = net.parameters()
    if settings.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=settings.lr, weight_decay=settings.weight_decay)
    if settings.optimizer == "adam":
        return torch.optim.Adam(params, lr=settings.lr, weight_decay=settings.weight_decay)
    if settings.optimizer == "sgd":
        return torch.optim.SGD(params, lr=settings.lr, momentum=settings.momentum, weight_decay=settings.weight_decay)
    raise ValueError(f"unknown optimizer {settings.optimizer!r}; choose one of {', '.join(OPTIMIZERS)}")


def initial_network(
    settings: TrainSettings, source, seed: int, announce: Callable[[str], None] = print
) -> torch.nn.Module:
    """The seed's initial network: a function of (seed, model, shape, pretrained file) only, never of the loss."""
    torch.manual_seed(seed)
    net = make_classifier(
        settings.model, source.in_channels, source.num_classes, settings.image_size, **dict(settings.model_kwargs)
    )
    if settings.pretrained:
        announce(load_pretrained(net, settings.pretrained, settings.model))
    return net


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _autocast(device: torch.device, precision: str):
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16 if precision == "bf16" else torch.float16)


@torch.no_grad()
def evaluate(
    net: torch.nn.Module,
    source,
    loss_cfg: rlo.LossConfig,
    settings: TrainSettings,
    device: torch.device,
    dist: Dist = Dist(),
) -> tuple[float, float, float]:
    """(accuracy in [0, 1], mean CE, mean own loss) on the test split, in eval mode, summed over the processes."""
    was_training = net.training
    net.eval()
    totals = torch.zeros(4, dtype=torch.float64, device=device)  # correct, CE sum, own-loss sum, count
    for x, y in source.test_batches(EVAL_BATCH, dist.rank, dist.world, settings.workers):
        if x.shape[0] == 0:
            continue
        if settings.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with _autocast(device, settings.precision):
            logits = net(x)
        logits = logits.float()
        totals += torch.stack(
            [
                (logits.argmax(dim=1) == y).sum().double(),
                rlo.classification_loss(rlo.LossConfig("ce"), logits, y, reduction="sum").double(),
                rlo.classification_loss(loss_cfg, logits, y, reduction="sum").double(),
                torch.tensor(float(y.numel()), dtype=torch.float64, device=device),
            ]
        )
    dist.sum_(totals)
    net.train(was_training)
    correct, ce, own, count = totals.tolist()
    return correct / count, ce / count, own / count


# ---------------------------------------------------------------------------------------------------- checkpoints


def save_atomic(state: dict, path: pathlib.Path) -> None:
    """torch.save through :func:`dnnlib.files.atomic_write` (temporary file beside it, fsync, rename): a reader, or a
    resume after a kill, sees the old checkpoint or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda f: torch.save(state, f))


def run_name(data: str, loss_cfg: rlo.LossConfig, seed: int, model: str) -> str:
    return f"{data}-{model}-{loss_cfg.describe()}-s{seed}"


def _rng_state(device: torch.device) -> dict:
    state = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: dict, device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def _epochs_csv(records: list[EpochRecord]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    fields = [f.name for f in dataclasses.fields(EpochRecord)]
    writer.writerow(fields)
    for record in records:
        writer.writerow([getattr(record, f) for f in fields])
    return buffer.getvalue()


class RunDirError(ValueError):
    """A run folder that holds another run's checkpoint, or one to resume that does not fit."""


def _load_checkpoint(path: pathlib.Path, settings: TrainSettings, loss_cfg: rlo.LossConfig, seed: int) -> dict:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 -- a damaged or foreign file is one line naming it
        raise RunDirError(f"--resume: {path} cannot be read as a checkpoint ({reader_error(err)})") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        found = state.get("format") if isinstance(state, dict) else type(state).__name__
        raise RunDirError(f"--resume: {path} is not a checkpoint of this tool (format {found!r})")
    saved = json.loads(state["settings"])
    now = json.loads(settings.to_json())
    differ = sorted(k for k in set(saved) | set(now) if saved.get(k) != now.get(k))
    if differ or state["loss"] != loss_cfg.describe() or state["seed"] != seed:
        what = (
            ", ".join(f"{k}: {saved.get(k)!r} there, {now.get(k)!r} now" for k in differ)
            or f"loss {state['loss']} seed {state['seed']}"
        )
        raise RunDirError(
            f"--resume: {path} was made with other settings ({what}); resume with the same flags or "
            f"choose another --run-dir"
        )
    return state


# ---------------------------------------------------------------------------------------------------- one run


def train_run(
    source,
    loss_cfg: rlo.LossConfig,
    settings: TrainSettings,
    seed: int,
    *,
    device: str = "cpu",
    dist: Dist = Dist(),
    run_dir: pathlib.Path | None = None,
    resume: bool = False,
    progress: bool = True,
    on_epoch_end: Callable[[int], None] | None = None,
    announce: Callable[[str], None] = print,
) -> tuple[RunHistory, torch.nn.Module]:
    """Train one (model, loss, seed) run -> (RunHistory, trained net on the CPU).

    ``run_dir``: the run's folder for checkpoint.pt (written atomically after every epoch), log.csv and TensorBoard
    events (process 0 writes). ``resume``: continue from its checkpoint (model, optimiser, schedule, scaler, RNG,
    epoch), bit-exactly on the CPU; a finished run is returned as saved. ``on_epoch_end(epoch)`` runs after each
    epoch's checkpoint (tests stop a run there).
    """
    dev = torch.device(device)
    checkpoint = run_dir / CHECKPOINT if run_dir is not None else None
    if checkpoint is not None and checkpoint.exists() and not resume:
        raise RunDirError(f"{checkpoint} exists: pass --resume to continue that run, or choose another --run-dir")
    net = initial_network(settings, source, seed, announce if dist.is_main else (lambda line: None))
    memory_format = torch.channels_last if settings.channels_last else torch.contiguous_format
    net = net.to(dev, memory_format=memory_format)
    optimizer = make_optimizer(settings, net)
    steps_per_epoch = math.ceil(source.n_train / settings.batch)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        WarmupCosine(
            settings.epochs * steps_per_epoch, round(settings.warmup_epochs * steps_per_epoch), settings.schedule
        ),
    )
    scaler = torch.amp.GradScaler(dev.type, enabled=settings.precision == "fp16")
    history = RunHistory(loss_cfg, seed, [], settings.model, parameter_count(net))

    if checkpoint is not None and resume and checkpoint.exists():
        state = _load_checkpoint(checkpoint, settings, loss_cfg, seed)
        net.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        _set_rng_state(state["rng"], dev)
        history.epochs = [EpochRecord(**record) for record in state["history"]]
    else:
        acc, test_ce, test_loss = evaluate(net, source, loss_cfg, settings, dev, dist)
        history.epochs = [
            EpochRecord(
                0, math.nan, math.nan, math.nan, acc, test_ce, test_loss, optimizer.param_groups[0]["lr"], 0.0, 0.0
            )
        ]
    start_epoch = history.epochs[-1].epoch + 1
    main = dist.is_main and run_dir is not None
    writer = (
        SummaryWriter(str(run_dir / "tb"), purge_step=start_epoch) if main and start_epoch <= settings.epochs else None
    )
    ce_cfg = rlo.LossConfig("ce")
    what = f"{settings.model} {loss_cfg.describe()} seed {seed}"
    bar = tqdm(
        range(start_epoch, settings.epochs + 1),
        desc=what,
        unit="epoch",
        disable=None if progress and dist.is_main else True,
        leave=False,
        file=sys.stderr,
    )
    net.train()
    for epoch in bar:
        sums = torch.zeros(4, dtype=torch.float64, device=dev)  # own loss, CE, correct, count
        _synchronize(dev)
        start = time.perf_counter()
        for x, y, n_global in source.train_batches(
            epoch, seed, settings.batch, dist.rank, dist.world, settings.workers
        ):
            optimizer.zero_grad(set_to_none=True)
            if x.shape[0] == 0:  # this process's share of a short last batch is empty: add zero gradients
                for p in net.parameters():
                    p.grad = torch.zeros_like(p)
                loss_sum = ce_sum = correct = torch.zeros((), device=dev)
            else:
                if settings.channels_last:
                    x = x.contiguous(memory_format=torch.channels_last)
                with _autocast(dev, settings.precision):
                    logits = net(x)
                logits = logits.float()
                loss_sum = rlo.classification_loss(loss_cfg, logits, y, reduction="sum")
                # the sum over this process's rows / the global batch: summed over processes, the global mean
                scaler.scale(loss_sum / n_global).backward()
                with torch.no_grad():
                    ce_sum = rlo.classification_loss(ce_cfg, logits.detach(), y, reduction="sum")
                    correct = (logits.detach().argmax(dim=1) == y).sum()
            dist.sum_gradients_(net.parameters())
            if settings.clip_grad is not None:
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(net.parameters(), settings.clip_grad)
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            with torch.no_grad():
                sums += torch.stack(
                    [
                        loss_sum.detach().double(),
                        ce_sum.double(),
                        correct.double(),
                        torch.tensor(float(x.shape[0]), dtype=torch.float64, device=dev),
                    ]
                )
        _synchronize(dev)
        seconds = time.perf_counter() - start
        dist.sum_(sums)
        loss_total, ce_total, correct_total, count = sums.tolist()
        acc, test_ce, test_loss = evaluate(net, source, loss_cfg, settings, dev, dist)
        record = EpochRecord(
            epoch,
            loss_total / count,
            ce_total / count,
            correct_total / count,
            acc,
            test_ce,
            test_loss,
            optimizer.param_groups[0]["lr"],
            seconds,
            history.epochs[-1].wall_s + seconds,
        )
        history.epochs.append(record)
        bar.set_postfix(loss=f"{record.train_loss:.4f}", acc=f"{100 * acc:.2f}%")
        if progress and dist.is_main and bar.disable:  # no terminal (nohup, a batch scheduler): a line per epoch
            print(
                f"{what}: epoch {epoch}/{settings.epochs}, loss {record.train_loss:.4f}, test accuracy "
                f"{100 * acc:.2f}%, {seconds:.1f} s",
                flush=True,
            )
        if main:
            save_atomic(
                {
                    "format": CHECKPOINT_FORMAT,
                    "settings": settings.to_json(),
                    "loss": loss_cfg.describe(),
                    "seed": seed,
                    "epoch": epoch,
                    "model": net.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "scaler": scaler.state_dict(),
                    "rng": _rng_state(dev),
                    "history": [dataclasses.asdict(r) for r in history.epochs],
                },
                checkpoint,
            )
            text = _epochs_csv(history.epochs)
            atomic_write(run_dir / "log.csv", lambda f: f.write(text.encode()))  # noqa: B023 (called at once)
            for field in (
                "train_loss",
                "train_ce",
                "train_acc",
                "test_acc",
                "test_ce",
                "test_loss",
                "lr",
                "epoch_time_s",
            ):
                writer.add_scalar(f"{field}", getattr(record, field), epoch)
            writer.flush()
        dist.barrier()
        if on_epoch_end is not None:
            on_epoch_end(epoch)
    bar.close()
    if writer is not None:
        writer.close()
    return history, net.cpu()


def train_classifier(
    source,
    loss_cfg: rlo.LossConfig,
    settings: TrainSettings,
    seed: int,
    device: str = "cpu",
    progress: bool = True,
    **kwargs,
) -> tuple[RunHistory, torch.nn.Module]:
    """:func:`train_run` without a run folder (the in-memory form the tests and the sweep use)."""
    return train_run(source, loss_cfg, settings, seed, device=device, progress=progress, **kwargs)
