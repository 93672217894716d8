"""Fully-connected networks on the 2-class spiral, cross-entropy vs RLO (the paper's Figures 2/3, section 4.3).

    python -m experiments.spiral [--out rlo-results] [--seeds 5] [--iterations 1000 100 50]

Setup (paper: hidden 100, lr 0.01, k = 3, 1000/100/50 iterations for 2/3/4 layers; our choices marked *):

- Data*: 1500 points, 750 per class, seeded (data seed 0). Class c in {0, 1}: t ~ U(0, 1), angle
  ``2*pi*TURNS*t + pi*c`` with TURNS = 1.5, radius t, plus isotropic Gaussian noise of std NOISE = 0.05. A seeded
  permutation puts 70 % (1050) in training and 30 % (450) in test.
- Networks*: an n-layer FCN has n Linear layers (n - 1 hidden layers of width 100, ReLU), 2 output logits.
  CE and RLO start from the same initial weights (torch's default init under the init seed).
- Loss: ``rlo.classification_loss`` with ``LossConfig('ce')`` or ``LossConfig('rlo', k=3)`` (eq. 4, m = k) on the
  2 logits (softmax form; with 2 classes it is the binary loss of the margin z1 - z0).
- Optimiser*: AdamW, lr 0.01, torch's default betas and weight decay 0.01 (the paper's classifiers use AdamW),
  full batch (all 1050 training points every iteration).
- Reported: test accuracy for init seeds 0..S-1 (mean +- std); the figure shows init seed 0: the probability of
  class 1 over the plane, the p = 0.5 decision boundary in white, and the data points.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import math
import pathlib
import time
from collections.abc import Sequence

import click
import numpy as np
import torch
from matplotlib.figure import Figure
from torch import nn

import rlo
from experiments.outputs import out_option, save_figure_atomic, write_text_atomic

TURNS = 1.5
NOISE = 0.05
NUM_SAMPLES = 1500
TRAIN_FRACTION = 0.7
PAPER_ITERATIONS = {2: 1000, 3: 100, 4: 50}
FIGURE_NAME, TABLE_NAME, CSV_NAME = "spiral_boundaries.png", "spiral_results.md", "spiral_results.csv"
LOSSES = (rlo.LossConfig("ce"), rlo.LossConfig("rlo", k=3.0))


@dataclasses.dataclass(frozen=True)
class SpiralData:
    """x_* [n, 2] float32 coordinates, y_* [n] int64 class in {0, 1}."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor


def make_spiral(
    num_samples: int = NUM_SAMPLES, turns: float = TURNS, noise: float = NOISE, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Two interleaved spiral arms, num_samples // 2 per class -> x [N, 2] float32, y [N] int64 in {0, 1}."""
    if num_samples < 2 or num_samples % 2:
        raise ValueError(f"num_samples must be a positive even number, got {num_samples}")
    rng = np.random.default_rng(seed)
    per_class = num_samples // 2
    xs, ys = [], []
    for label in (0, 1):
        t = rng.uniform(0.0, 1.0, per_class)
        angle = 2 * math.pi * turns * t + math.pi * label
        points = np.stack([t * np.cos(angle), t * np.sin(angle)], axis=1)
        xs.append(points + noise * rng.standard_normal((per_class, 2)))
        ys.append(np.full(per_class, label, dtype=np.int64))
    return np.concatenate(xs).astype(np.float32), np.concatenate(ys)


def split_spiral(x: np.ndarray, y: np.ndarray, train_fraction: float = TRAIN_FRACTION, seed: int = 0) -> SpiralData:
    """Seeded random split; the first ``round(train_fraction * N)`` of a permutation train."""
    order = np.random.default_rng(seed).permutation(x.shape[0])
    cut = int(round(train_fraction * x.shape[0]))
    train, test = order[:cut], order[cut:]
    return SpiralData(
        torch.from_numpy(x[train]), torch.from_numpy(y[train]), torch.from_numpy(x[test]), torch.from_numpy(y[test])
    )


def make_fcn(num_layers: int, hidden: int = 100) -> nn.Sequential:
    """num_layers Linear layers: 2 -> hidden (-> hidden)* -> 2 logits, ReLU between them."""
    if num_layers < 1:
        raise ValueError(f"num_layers must be >= 1, got {num_layers}")
    layers: list[nn.Module] = []
    width = 2
    for _ in range(num_layers - 1):
        layers += [nn.Linear(width, hidden), nn.ReLU()]
        width = hidden
    layers.append(nn.Linear(width, 2))
    return nn.Sequential(*layers)


def train_fcn(
    data: SpiralData,
    loss_cfg: rlo.LossConfig,
    num_layers: int,
    iterations: int,
    seed: int,
    lr: float = 0.01,
    device: str = "cpu",
) -> nn.Sequential:
    """Full-batch AdamW on the training split; the init depends only on (seed, num_layers), not on the loss."""
    torch.manual_seed(seed)
    net = make_fcn(num_layers).to(device)
    optimizer = torch.optim.AdamW(net.parameters(), lr=lr)
    x, y = data.x_train.to(device), data.y_train.to(device)
    for _ in range(iterations):
        optimizer.zero_grad(set_to_none=True)
        rlo.classification_loss(loss_cfg, net(x), y).backward()
        optimizer.step()
    return net


@torch.no_grad()
def accuracy(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    device = next(net.parameters()).device
    return float((net(x.to(device)).argmax(dim=1).cpu() == y).double().mean())


@torch.no_grad()
def class1_probability(net: nn.Module, points: torch.Tensor) -> torch.Tensor:
    """points [P, 2] -> softmax probability of class 1, [P]."""
    device = next(net.parameters()).device
    return torch.softmax(net(points.to(device)).float(), dim=1)[:, 1].cpu()


@dataclasses.dataclass
class SpiralRun:
    loss: rlo.LossConfig
    num_layers: int
    iterations: int
    test_acc: list[float]  # one per init seed
    net: nn.Sequential  # the seed-0 network, for the figure


def run_all(data: SpiralData, iterations: dict[int, int], seeds: int, device: str = "cpu") -> list[SpiralRun]:
    runs = []
    for loss_cfg in LOSSES:
        for num_layers, steps in iterations.items():
            nets = [train_fcn(data, loss_cfg, num_layers, steps, seed, device=device) for seed in range(seeds)]
            runs.append(
                SpiralRun(
                    loss_cfg,
                    num_layers,
                    steps,
                    [accuracy(net, data.x_test, data.y_test) for net in nets],
                    nets[0].cpu(),
                )
            )
    return runs


def _label(cfg: rlo.LossConfig) -> str:
    return "CE" if cfg.name == "ce" else f"RLO (k={cfg.k:g})"


def results_table(runs: Sequence[SpiralRun]) -> str:
    lines = [
        "| Loss | FCN layers | iterations | test acc. (%), seed 0 | test acc. (%), mean ± std over seeds |",
        "|---|---|---|---|---|",
    ]
    for run in runs:
        acc = 100 * np.array(run.test_acc)
        lines.append(
            f"| {_label(run.loss)} | {run.num_layers} | {run.iterations} | {acc[0]:.2f} | "
            f"{acc.mean():.2f} ± {acc.std():.2f} (n={acc.size}) |"
        )
    return "\n".join(lines)


def results_csv(runs: Sequence[SpiralRun]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["loss", "k", "num_layers", "iterations", "seed", "test_acc"])
    for run in runs:
        for seed, acc in enumerate(run.test_acc):
            writer.writerow(
                [
                    run.loss.name,
                    f"{run.loss.k:g}" if run.loss.is_rooted else "",
                    run.num_layers,
                    run.iterations,
                    seed,
                    f"{acc:.6f}",
                ]
            )
    return buffer.getvalue()


def boundary_figure(runs: Sequence[SpiralRun], data: SpiralData, resolution: int = 300) -> Figure:
    """Rows: losses; columns: depths. Colour = p(class 1), white line = p = 0.5, dots = all data points."""
    depths = sorted({run.num_layers for run in runs})
    losses = list(dict.fromkeys(run.loss for run in runs))
    x_all = torch.cat([data.x_train, data.x_test]).numpy()
    y_all = torch.cat([data.y_train, data.y_test]).numpy()
    low, high = x_all.min() - 0.15, x_all.max() + 0.15
    axis = torch.linspace(float(low), float(high), resolution)
    grid_y, grid_x = torch.meshgrid(axis, axis, indexing="ij")
    points = torch.stack([grid_x.flatten(), grid_y.flatten()], dim=1)
    figure = Figure(figsize=(4.3 * len(depths), 4.1 * len(losses)))
    axes = figure.subplots(len(losses), len(depths), squeeze=False)
    image = None
    for run in runs:
        row, column = losses.index(run.loss), depths.index(run.num_layers)
        ax = axes[row, column]
        prob = class1_probability(run.net, points).view(resolution, resolution).numpy()
        image = ax.imshow(prob, origin="lower", extent=(low, high, low, high), cmap="RdBu_r", vmin=0, vmax=1)
        ax.contour(grid_x.numpy(), grid_y.numpy(), prob, levels=[0.5], colors="white", linewidths=2.0)
        ax.scatter(x_all[:, 0], x_all[:, 1], c=np.where(y_all == 1, "darkred", "navy"), s=4, linewidths=0)
        ax.set_title(
            f"{_label(run.loss)}, {run.num_layers}-layer FCN, {run.iterations} it\n"
            f"test acc. {100 * run.test_acc[0]:.1f}% (seed 0)",
            fontsize=10,
        )
        ax.set_xticks([])
        ax.set_yticks([])
    figure.colorbar(image, ax=axes, shrink=0.8, label="p(class 1)")
    return figure


@click.command(
    help="Fully-connected networks on the 2-class spiral, cross-entropy vs RLO (k = 3), the paper's "
    f"Figures 2/3; writes {TABLE_NAME}, {CSV_NAME} and {FIGURE_NAME}."
)
@out_option
@click.option(
    "--seeds",
    type=click.IntRange(min=1),
    default=5,
    show_default=True,
    help="init seeds per (loss, depth) for the table",
)
@click.option(
    "--iterations",
    type=click.IntRange(min=0),
    nargs=3,
    default=tuple(PAPER_ITERATIONS.values()),
    show_default=True,
    metavar="IT2 IT3 IT4",
    help="iterations of the 2/3/4-layer FCNs",
)
@click.option("--device", default="cpu", show_default=True, help="torch device")
def main(out: pathlib.Path, seeds: int, iterations: tuple[int, int, int], device: str) -> None:
    start = time.perf_counter()
    data = split_spiral(*make_spiral())
    runs = run_all(data, dict(zip(PAPER_ITERATIONS, iterations)), seeds, device)
    seconds = time.perf_counter() - start
    table = results_table(runs)
    header = (
        f"# FCNs on the 2-class spiral: CE vs RLO (paper Figures 2/3)\n\nProduced by `python -m "
        f"experiments.spiral`. Spiral: {NUM_SAMPLES} points, {TURNS:g} turns, noise std {NOISE:g}, "
        f"70/30 split ({data.x_train.shape[0]}/{data.x_test.shape[0]}); hidden width 100, ReLU; full-batch "
        f"AdamW lr 0.01 (weight decay 0.01); same init for CE and RLO. Training time {seconds:.1f} s "
        f"({torch.get_num_threads()} torch threads).\n\n"
    )
    paths = [
        write_text_atomic(out / TABLE_NAME, header + table + "\n"),
        write_text_atomic(out / CSV_NAME, results_csv(runs)),
        save_figure_atomic(boundary_figure(runs, data), out / FIGURE_NAME),
    ]
    click.echo(table)
    click.echo(f"training time {seconds:.1f} s")
    for path in paths:
        click.echo(f"wrote {path}")


if __name__ == "__main__":
    main()
