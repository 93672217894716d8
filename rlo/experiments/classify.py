"""Image classification with CE, focal and RLO (k = 5, 8, 10): the paper's Table 2 protocol, at any size.

    python -m rlo.experiments.classify [--data digits|cifar10] [--cifar-path PATH] [--model small-cnn|resnet18]
                                       [--losses ce,focal,rlo-k5,rlo-k8,rlo-k10] [--epochs 30] [--seeds 5]
                                       [--out rlo-results]

Setup (paper section 4.3 / Table 2: ResNet-50, ViT-B, Swin-B on CIFAR-10/100, 100-200 epochs, AdamW; focal with
gamma = 3, alpha = 0.25; RLO eq. 4 with m = k. Our choices where the paper is silent or too big for a CPU marked *):

- Data: ``digits`` (default*, offline): scikit-learn's 1,797 digits from :mod:`rlo.experiments.image_data`, 32x32 grey,
  a seeded 80/20 split (data seed 0) -> 1438 train / 359 test. ``cifar10``: the local python archive
  ``cifar-10-python.tar.gz`` (50,000 train from data_batch_1..5, 10,000 test from test_batch), read with the
  numpy-only unpickler of :mod:`rlo.experiments.image_data`; nothing is downloaded.
- Pixels scaled to [0, 1], then standardised per channel with the training split's mean/std*. CIFAR-10 training
  batches get a random 4-pixel-padded 32x32 crop and a horizontal flip*; digits get no augmentation (a flipped
  digit is another digit).
- Models*: ``small-cnn`` (3 conv stages 16/32/64, ~24k parameters) or ``resnet18`` (torchvision ResNet-18 with a
  3x3 stride-1 stem). For each seed every loss starts from the same initial weights and sees the same batch
  order and augmentations.
- Optimiser*: AdamW, lr 1e-3, weight decay 0.01, torch's default betas, constant lr, batch 64.
- Recorded per epoch: the mean training objective (each loss's own), the mean training CE on the same batches
  (running, while the weights change), test accuracy and CE after the epoch, and the training wall time of the
  epoch (evaluation excluded). Epoch 0 is the shared initial network.
- Reported: mean +- std (numpy's population std) over seeds of the test accuracy after the last epoch (no
  early stopping on the test set), its difference to CE on the same seed (paired: same init, same batches) and,
  for reference, of the best test accuracy over epochs (optimistic: it picks
  the epoch on the test set), plus the mean training time per epoch.
"""
from __future__ import annotations

import csv
import dataclasses
import io
import os
import pathlib
import sys
import time
from typing import Any, Dict, List, Optional, Sequence

import click
import numpy as np
import torch
from click.core import ParameterSource
from matplotlib.figure import Figure
from tqdm import tqdm

import rlo
from rlo.experiments import image_data
from rlo.experiments.classifier_models import MODEL_NAMES, make_classifier
from rlo.experiments.outputs import out_option, save_figure_atomic, write_text_atomic

DATA_NAMES = ("digits", "cifar10")
DEFAULT_LOSSES = "ce,focal,rlo-k5,rlo-k8,rlo-k10"
CIFAR10_ENV = "RLO_CIFAR10"
CIFAR10_ARCHIVE = "cifar-10-python.tar.gz"
CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
DIGITS_TRAIN_FRACTION = 0.8
EVAL_BATCH = 1000
CROP_PADDING = 4


# ---------------------------------------------------------------------------------------------------- losses

def parse_loss(name: str) -> rlo.LossConfig:
    """A loss label -> the family member, by :meth:`rlo.LossConfig.parse` (the labels ``describe`` writes):
    ``ce``, ``focal`` (gamma 3, alpha 0.25, as the paper; ``focal-g2-a0.5`` otherwise), ``unhinged``, ``rlo-k5``
    (eq. 4, m = k), ``rlo-eq9-k3``, ``rlo-k3-m5``. The short spellings ``rlo-5`` and ``rlo-eq9-3`` are aliases
    of ``rlo-k5`` and ``rlo-eq9-k3``. Anything else raises ValueError naming the value."""
    try:
        return rlo.LossConfig.parse(name.strip())
    except ValueError as err:
        raise ValueError(f"--losses: {err}") from None


def parse_losses(text: str) -> List[rlo.LossConfig]:
    """Comma-separated loss labels -> configs, in order; duplicates (``rlo-5,rlo-k5`` too) and an empty list are
    errors."""
    names = [part for part in (p.strip() for p in text.split(",")) if part]
    if not names:
        raise ValueError(f"--losses: no loss named in {text!r}")
    configs = [parse_loss(name) for name in names]
    if len(set(configs)) != len(configs):
        raise ValueError(f"--losses: a loss is named twice in {text!r}")
    return configs


def loss_label(cfg: rlo.LossConfig) -> str:
    """Table/plot label in the paper's spelling: CE, Focal, RLO-5."""
    if cfg.name == "ce":
        return "CE"
    if cfg.name == "focal":
        return f"Focal (γ={cfg.gamma:g}" + ("" if cfg.alpha is None else f", α={cfg.alpha:g}") + ")"
    if cfg.is_rooted:
        return f"{cfg.name.upper()}-{cfg.k:g}" + ("" if cfg.m is None else f" (m={cfg.m:g})")
    return cfg.name


# ---------------------------------------------------------------------------------------------------- data

@dataclasses.dataclass(frozen=True)
class ImageData:
    """uint8 images [N, C, H, W] and int64 labels [N] for each split, plus the dataset's name."""

    name: str
    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    num_classes: int = 10

    @property
    def in_channels(self) -> int:
        return int(self.train_images.shape[1])


def load_digits_split(max_images: Optional[int] = None, seed: int = 0) -> ImageData:
    """The embedded digits at 32x32, one grey channel; a seeded permutation, the first 80 % train.

    ``max_images`` keeps the first that many of the permutation (for quick runs), split 80/20 the same way.
    """
    images, labels = image_data.load_digits_images(resolution=32, num_channels=1)
    order = np.random.default_rng(seed).permutation(len(images))
    if max_images is not None:
        if max_images < 2:
            raise ValueError(f"--max-images must be >= 2, got {max_images}")
        order = order[:max_images]
    cut = int(round(DIGITS_TRAIN_FRACTION * len(order)))
    train, test = order[:cut], order[cut:]
    return ImageData("digits", torch.from_numpy(images[train]), torch.from_numpy(labels[train]),
                     torch.from_numpy(images[test]), torch.from_numpy(labels[test]))


def resolve_cifar10_path(cli_path: Optional[str]) -> pathlib.Path:
    """``--cifar-path``, else ``$RLO_CIFAR10``; a missing file raises FileNotFoundError saying where to get it."""
    where = (f"Download {CIFAR10_URL} yourself (this tool downloads nothing) and pass --cifar-path=PATH or set "
             f"{CIFAR10_ENV}=PATH (the .tar.gz as downloaded, or its extracted cifar-10-batches-py folder).")
    raw = cli_path or os.environ.get(CIFAR10_ENV)
    if not raw:
        raise FileNotFoundError(f"--data=cifar10 needs the CIFAR-10 python archive {CIFAR10_ARCHIVE}. {where}")
    path = pathlib.Path(raw).expanduser()
    if not path.exists():
        source = "--cifar-path" if cli_path else f"${CIFAR10_ENV}"
        raise FileNotFoundError(f"{source}: no such file {str(path)!r} (expected {CIFAR10_ARCHIVE}). {where}")
    return path


def load_cifar10_split(path: pathlib.Path) -> ImageData:
    """CIFAR-10's official split: data_batch_1..5 train, test_batch test (uint8 NCHW, labels 0..9)."""
    train_images, train_labels = image_data.read_cifar10(str(path))
    test_images, test_labels = image_data.read_cifar10(str(path), batches=(image_data.CIFAR10_TEST_BATCH,))
    to_nchw = lambda images: torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))  # noqa: E731
    return ImageData("cifar10", to_nchw(train_images), torch.from_numpy(train_labels),
                     to_nchw(test_images), torch.from_numpy(test_labels))


def standardiser(images: torch.Tensor) -> tuple:
    """Per-channel (mean, std) [1, C, 1, 1] of uint8 images scaled to [0, 1]."""
    x = images.double() / 255
    return x.mean(dim=(0, 2, 3), keepdim=True).float(), x.std(dim=(0, 2, 3), keepdim=True).clamp_min(1e-6).float()


def random_crop_flip(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """x [N, C, H, W] -> the same shape: zero-pad by 4, take a random HxW window, flip left-right with p = 0.5."""
    n, _, h, w = x.shape
    padded = torch.nn.functional.pad(x, [CROP_PADDING] * 4)
    dy = torch.randint(0, 2 * CROP_PADDING + 1, (n,), generator=generator).to(x.device)
    dx = torch.randint(0, 2 * CROP_PADDING + 1, (n,), generator=generator).to(x.device)
    flip = (torch.rand(n, generator=generator) < 0.5).to(x.device)
    rows = dy[:, None] + torch.arange(h, device=x.device)                              # [N, H]
    cols = dx[:, None] + torch.arange(w, device=x.device)                              # [N, W]
    cols = torch.where(flip[:, None], cols.flip(1), cols)
    batch = torch.arange(n, device=x.device)[:, None, None, None]
    channel = torch.arange(x.shape[1], device=x.device)[None, :, None, None]
    return padded[batch, channel, rows[:, None, :, None], cols[:, None, None, :]]


# ---------------------------------------------------------------------------------------------------- training

@dataclasses.dataclass(frozen=True)
class TrainSettings:
    """Everything but the loss and the seed that decides a run; JSON-able."""

    model: str = "small-cnn"
    epochs: int = 30
    batch: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.01
    augment: bool = False


@dataclasses.dataclass
class EpochRecord:
    epoch: int                 # 0 = the initial network, before any step
    train_loss: float          # mean of the run's own objective over the epoch's batches (nan at epoch 0)
    train_ce: float            # mean CE on the same batches, same forward pass (nan at epoch 0)
    test_acc: float            # fraction in [0, 1] after the epoch
    test_ce: float
    epoch_time_s: float        # training wall time of this epoch, evaluation excluded
    wall_s: float              # cumulative training wall time


@dataclasses.dataclass
class RunHistory:
    loss: rlo.LossConfig
    seed: int
    epochs: List[EpochRecord]


def initial_network(settings: TrainSettings, data: ImageData, seed: int) -> torch.nn.Module:
    """The seed's initial network: a function of (seed, model, shape) only, never of the loss."""
    torch.manual_seed(seed)
    return make_classifier(settings.model, data.in_channels, data.num_classes)


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.no_grad()
def evaluate(net: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor) -> tuple:
    """(accuracy in [0, 1], mean CE) of float images [N, C, H, W] on the net's device, in eval mode."""
    was_training = net.training
    net.eval()
    correct, ce_sum = 0, 0.0
    for start in range(0, images.shape[0], EVAL_BATCH):
        logits = net(images[start:start + EVAL_BATCH]).float()
        target = labels[start:start + EVAL_BATCH]
        correct += int((logits.argmax(dim=1) == target).sum())
        ce_sum += float(rlo.classification_loss(rlo.LossConfig("ce"), logits, target, reduction="sum"))
    net.train(was_training)
    return correct / images.shape[0], ce_sum / images.shape[0]


def train_classifier(data: ImageData, loss_cfg: rlo.LossConfig, settings: TrainSettings, seed: int,
                     device: str = "cpu", progress: bool = True) -> tuple:
    """Train one (loss, seed) run -> (RunHistory, trained net). Init, batch order and augmentation depend only
    on the seed, so the losses differ in nothing but the objective."""
    dev = torch.device(device)
    net = initial_network(settings, data, seed).to(dev)
    optimizer = torch.optim.AdamW(net.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    mean, std = (t.to(dev) for t in standardiser(data.train_images))
    x_train = (data.train_images.to(dev).float() / 255 - mean) / std
    x_test = (data.test_images.to(dev).float() / 255 - mean) / std
    y_train, y_test = data.train_labels.to(dev), data.test_labels.to(dev)
    generator = torch.Generator().manual_seed(seed)
    acc, test_ce = evaluate(net, x_test, y_test)
    records = [EpochRecord(0, float("nan"), float("nan"), acc, test_ce, 0.0, 0.0)]
    ce_cfg = rlo.LossConfig("ce")
    bar = tqdm(range(1, settings.epochs + 1), desc=f"{loss_label(loss_cfg)} seed {seed}", unit="epoch",
               disable=None if progress else True, leave=False, file=sys.stderr)
    wall = 0.0
    for epoch in bar:
        net.train()
        order = torch.randperm(x_train.shape[0], generator=generator).to(dev)
        loss_sum = torch.zeros((), device=dev, dtype=torch.float64)
        ce_sum = torch.zeros((), device=dev, dtype=torch.float64)
        _synchronize(dev)
        start = time.perf_counter()
        for first in range(0, order.numel(), settings.batch):
            index = order[first:first + settings.batch]
            x = x_train[index]
            if settings.augment:
                x = random_crop_flip(x, generator)
            logits = net(x)
            loss = rlo.classification_loss(loss_cfg, logits, y_train[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            with torch.no_grad():
                loss_sum += loss.detach().double() * index.numel()
                ce_sum += rlo.classification_loss(ce_cfg, logits.detach().float(), y_train[index],
                                                  reduction="sum").double()
        _synchronize(dev)
        seconds = time.perf_counter() - start
        wall += seconds
        acc, test_ce = evaluate(net, x_test, y_test)
        n = order.numel()
        records.append(EpochRecord(epoch, float(loss_sum) / n, float(ce_sum) / n, acc, test_ce, seconds, wall))
        bar.set_postfix(loss=f"{records[-1].train_loss:.4f}", acc=f"{100 * acc:.2f}%")
    bar.close()
    return RunHistory(loss_cfg, seed, records), net.cpu()


def run_all(data: ImageData, losses: Sequence[rlo.LossConfig], settings: TrainSettings, seeds: int,
            device: str = "cpu", progress: bool = True) -> List[RunHistory]:
    """Seed-major, so a slow-down of the shared machine spreads over the losses rather than hitting one."""
    return [train_classifier(data, cfg, settings, seed, device, progress)[0]
            for seed in range(seeds) for cfg in losses]


# ---------------------------------------------------------------------------------------------------- report

def _by_loss(runs: Sequence[RunHistory]) -> Dict[rlo.LossConfig, List[RunHistory]]:
    grouped: Dict[rlo.LossConfig, List[RunHistory]] = {}
    for run in runs:
        grouped.setdefault(run.loss, []).append(run)
    return grouped


def summary_rows(runs: Sequence[RunHistory]) -> List[dict]:
    """One dict per loss: accuracies in %, times in seconds, mean/std over seeds (numpy population std).

    ``diff_vs_ce_*``: last-epoch test accuracy minus CE's on the same seed (same init and batches), in
    percentage points; empty when CE was not run.
    """
    rows = []
    ce_final = {run.seed: run.epochs[-1].test_acc for run in runs if run.loss == rlo.LossConfig("ce")}
    for cfg, group in _by_loss(runs).items():
        final = 100 * np.array([run.epochs[-1].test_acc for run in group])
        paired = 100 * np.array([run.epochs[-1].test_acc - ce_final[run.seed] for run in group
                                 if run.seed in ce_final])
        best = 100 * np.array([max(r.test_acc for r in run.epochs[1:]) if len(run.epochs) > 1
                               else run.epochs[0].test_acc for run in group])
        epoch_times = np.array([r.epoch_time_s for run in group for r in run.epochs[1:]] or [0.0])
        rows.append(dict(loss=cfg.describe(), label=loss_label(cfg), k=f"{cfg.k:g}" if cfg.is_rooted else "",
                         seeds=len(group), test_acc_mean=final.mean(), test_acc_std=final.std(),
                         diff_vs_ce_mean=paired.mean() if paired.size else "",
                         diff_vs_ce_std=paired.std() if paired.size else "",
                         best_epoch_acc_mean=best.mean(), best_epoch_acc_std=best.std(),
                         epoch_time_mean_s=epoch_times.mean(), epoch_time_std_s=epoch_times.std(),
                         total_train_time_mean_s=float(np.mean([run.epochs[-1].wall_s for run in group])),
                         final_train_ce_mean=float(np.mean([run.epochs[-1].train_ce for run in group]))))
    return rows


def results_table(runs: Sequence[RunHistory]) -> str:
    lines = ["| Loss | test acc. (%), last epoch | − CE, same seed (pp) | best-epoch test acc. (%) | "
             "train time / epoch (s) | train time, total (s) | train CE, last epoch |",
             "|---|---|---|---|---|---|---|"]
    for row in summary_rows(runs):
        paired = "" if row["diff_vs_ce_mean"] == "" else f"{row['diff_vs_ce_mean']:+.2f} ± {row['diff_vs_ce_std']:.2f}"
        lines.append(f"| {row['label']} | {row['test_acc_mean']:.2f} ± {row['test_acc_std']:.2f} "
                     f"(n={row['seeds']}) | {paired} | "
                     f"{row['best_epoch_acc_mean']:.2f} ± {row['best_epoch_acc_std']:.2f} | "
                     f"{row['epoch_time_mean_s']:.3f} ± {row['epoch_time_std_s']:.3f} | "
                     f"{row['total_train_time_mean_s']:.1f} | {row['final_train_ce_mean']:.4f} |")
    return "\n".join(lines)


def results_csv(runs: Sequence[RunHistory]) -> str:
    rows = summary_rows(runs)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({key: f"{value:.6f}" if isinstance(value, float) else value for key, value in row.items()})
    return buffer.getvalue()


def epochs_csv(runs: Sequence[RunHistory]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    fields = [f.name for f in dataclasses.fields(EpochRecord)]
    writer.writerow(["loss", "seed"] + fields)
    for run in runs:
        for record in run.epochs:
            writer.writerow([run.loss.describe(), run.seed] + [
                f"{getattr(record, f):.6f}" if isinstance(getattr(record, f), float) else getattr(record, f)
                for f in fields])
    return buffer.getvalue()


def curves_figure(runs: Sequence[RunHistory], title: str) -> Figure:
    """Three panels, one line per loss (mean over seeds, band = min..max): test accuracy vs epoch, test accuracy
    vs cumulative training wall time, training CE vs epoch."""
    figure = Figure(figsize=(16, 4.6))
    axes = figure.subplots(1, 3)
    for cfg, group in _by_loss(runs).items():
        epochs = np.array([r.epoch for r in group[0].epochs])
        acc = 100 * np.array([[r.test_acc for r in run.epochs] for run in group])
        wall = np.array([[r.wall_s for r in run.epochs] for run in group]).mean(axis=0)
        train_ce = np.array([[r.train_ce for r in run.epochs[1:]] for run in group])
        line, = axes[0].plot(epochs, acc.mean(axis=0), marker=".", label=loss_label(cfg))
        axes[0].fill_between(epochs, acc.min(axis=0), acc.max(axis=0), color=line.get_color(), alpha=0.15)
        axes[1].plot(wall, acc.mean(axis=0), marker=".", color=line.get_color(), label=loss_label(cfg))
        if train_ce.size:
            axes[2].plot(epochs[1:], train_ce.mean(axis=0), marker=".", color=line.get_color(), label=loss_label(cfg))
    axes[0].set(xlabel="epoch", ylabel="test accuracy (%)", title="test accuracy vs epoch (band: min..max)")
    axes[1].set(xlabel="training wall time (s, mean over seeds)", ylabel="test accuracy (%)",
                title="test accuracy vs wall time")
    axes[2].set(xlabel="epoch", ylabel="train CE (running mean)", yscale="log", title="training cross-entropy")
    for ax in axes:
        ax.grid(alpha=0.3)
        if ax.lines:  # the CE panel is empty after --epochs=0
            ax.legend(fontsize=8)
    figure.suptitle(title)
    return figure


# ---------------------------------------------------------------------------------------------------- CLI

def _losses_flag(ctx: click.Context, param: click.Parameter, text: str) -> List[rlo.LossConfig]:
    try:
        return parse_losses(text)
    except ValueError as err:  # the message starts with --losses and names the value
        raise click.UsageError(str(err)) from None


def _default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def _flag_text(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return ",".join(_flag_text(item) for item in value)
    return value.describe() if isinstance(value, rlo.LossConfig) else str(value)


def _command_line(ctx: click.Context) -> str:
    """The run as one command: the flags given (not the defaults), in ``--help`` order, losses by their labels."""
    given = [f"--{param.name.replace('_', '-')}={_flag_text(ctx.params[param.name])}" for param in ctx.command.params
             if param.name in ctx.params and ctx.get_parameter_source(param.name) is not ParameterSource.DEFAULT]
    return " ".join(["python -m rlo.experiments.classify"] + given)


def load_data(data: str, cifar_path: Optional[str], max_images: Optional[int]) -> ImageData:
    if data == "cifar10":
        return load_cifar10_split(resolve_cifar10_path(cifar_path))
    return load_digits_split(max_images)


@click.command(help="Image classification with CE, focal and RLO (k = 5, 8, 10), the paper's Table 2 protocol; "
                    "writes classify_DATA.md, .csv, _epochs.csv and .png.")
@click.option("--data", type=click.Choice(DATA_NAMES), default="digits", show_default=True,
              help="dataset (digits: embedded, offline)")
@click.option("--cifar-path", default=None, metavar="PATH",
              help=f"{CIFAR10_ARCHIVE} or its extracted folder [default: ${CIFAR10_ENV}]")
@click.option("--losses", default=DEFAULT_LOSSES, show_default=True, callback=_losses_flag, metavar="LIST",
              help="comma-separated loss labels")
@click.option("--model", type=click.Choice(MODEL_NAMES), default="small-cnn", show_default=True, help="network")
@click.option("--epochs", type=click.IntRange(min=0), default=30, show_default=True, help="epochs per run")
@click.option("--batch", type=click.IntRange(min=1), default=64, show_default=True, help="minibatch size")
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=1e-3, show_default=True,
              help="AdamW learning rate")
@click.option("--weight-decay", type=click.FloatRange(min=0), default=0.01, show_default=True,
              help="AdamW weight decay")
@click.option("--seeds", type=click.IntRange(min=1), default=5, show_default=True,
              help="init/batch-order seeds 0..S-1 per loss")
@click.option("--max-images", type=click.IntRange(min=2), default=None,
              help="digits only: use this many images (quick runs) [default: all]")
@out_option
@click.option("--device", default=_default_device, show_default="cuda when available, else cpu", help="torch device")
@click.pass_context
def main(ctx: click.Context, data: str, cifar_path: Optional[str], losses: List[rlo.LossConfig], model: str,
         epochs: int, batch: int, lr: float, weight_decay: float, seeds: int, max_images: Optional[int],
         out: pathlib.Path, device: str) -> None:
    if max_images is not None and data != "digits":
        raise click.UsageError("--max-images applies to --data=digits only")
    try:
        images = load_data(data, cifar_path, max_images)
    except (ValueError, FileNotFoundError) as err:  # DataFileError is a ValueError; messages name file and flag
        raise click.UsageError(str(err)) from None
    settings = TrainSettings(model, epochs, batch, lr, weight_decay, augment=data == "cifar10")
    start = time.perf_counter()
    runs = run_all(images, losses, settings, seeds, device)  # tqdm bars only on a terminal
    seconds = time.perf_counter() - start
    table = results_table(runs)
    header = (f"# Image classification on {images.name}: CE vs focal vs RLO (paper Table 2 protocol)\n\n"
              f"Produced by `{_command_line(ctx)}`. {images.name}: {images.train_images.shape[0]} train / "
              f"{images.test_images.shape[0]} test images {list(images.train_images.shape[1:])}; model "
              f"{settings.model}; AdamW lr {settings.lr:g}, weight decay {settings.weight_decay:g}, batch "
              f"{settings.batch}, {settings.epochs} epochs, constant lr, augmentation "
              f"{'crop+flip' if settings.augment else 'none'}; seeds 0..{seeds - 1}, each seed gives every loss the "
              f"same initial weights and batch order. Device {device}, {torch.get_num_threads()} torch threads; "
              f"whole run {seconds:.1f} s.\n\n"
              f"Test accuracy after the last epoch and the best over epochs (the latter picks the epoch on the "
              f"test set, so it is optimistic), mean ± std over seeds. Time: training only, evaluation excluded.\n\n")
    stem = f"classify_{images.name}"
    figure = curves_figure(runs, f"{images.name}, {settings.model}, AdamW lr {settings.lr:g}, {seeds} seed(s)")
    paths = [write_text_atomic(out / f"{stem}.md", header + table + "\n"),
             write_text_atomic(out / f"{stem}.csv", results_csv(runs)),
             write_text_atomic(out / f"{stem}_epochs.csv", epochs_csv(runs)),
             save_figure_atomic(figure, out / f"{stem}.png")]
    click.echo(table)
    click.echo(f"whole run {seconds:.1f} s")
    for path in paths:
        click.echo(f"wrote {path}")


if __name__ == "__main__":
    main()
