"""Which k a StyleGAN2-ADA run with the rooted loss used, read back from its stats.jsonl.

Why: a run's k is not always what its name or notes say. The official loop (and ours) logs, per tick, the mean
and std of D's logits on real and on generated images (`Loss/scores/real`, `Loss/scores/fake`) and the mean
losses: `Loss/G/loss` is G's term per generated image, `Loss/D/loss` D's fake term plus its real term. Under eq. 4
(m = k) each term is k exp(nll / k) = k + nll + nll^2 / 2k + ..., so at a given score distribution the logged
losses pin k down: treating a tick's logits as normal with the logged mean and std, the expected losses are
integrals that Gauss-Hermite quadrature evaluates with the loss family's own functions (rlo.gan.GanObjective, one
implementation), and k is the value whose expected G and D losses fit the logged ones best (least squares on
their logarithms, over a log-spaced grid of k). k exp(a / k) has its minimum at k = a, so a single loss can be
fitted by a small k as well as a large one; the joint fit of G's and D's losses separates them. Each fit has a
residual (the largest |log(expected / logged)|): eq. 4 with m = k is at least k + nll, so CE logs, or another
member's, fit no k, and the report says so rather than print a k.

    python3 -m training.infer_k results/00000-ffhq-rlo/stats.jsonl
    python3 -m training.infer_k stats.jsonl --loss=rlo-eq9 --json=k.json
"""

from __future__ import annotations

import dataclasses
import json
import math

import click
import numpy as np
import torch

from dnnlib.cli import verbatim
from dnnlib.files import atomic_write
from rlo.family import LossConfig
from rlo.gan import GanObjective

K_GRID = np.exp(np.linspace(math.log(0.05), math.log(2000.0), 1201))  # 0.05 .. 2000, 0.9% apart
QUADRATURE_POINTS = 64
RESIDUAL_OK = 0.05  # a fit whose expected losses are within 5% of the logged ones
NEEDED = ("Loss/scores/real", "Loss/scores/fake", "Loss/G/loss", "Loss/D/loss")


class StatsError(ValueError):
    """A stats.jsonl that cannot say anything about k; the message names the file and line."""


@dataclasses.dataclass(frozen=True)
class Tick:
    """What one stats.jsonl line says about the adversarial loss."""

    kimg: float
    real_mean: float
    real_std: float
    fake_mean: float
    fake_std: float
    g_loss: float
    d_loss: float


@dataclasses.dataclass(frozen=True)
class Fit:
    tick: Tick
    k: float  # the grid value whose expected losses fit best
    g_pred: float
    d_pred: float
    fitted_on: str  # "G+D", or "D" / "G" where the other logged loss is not finite
    other_roots: tuple[float, ...]  # with one loss: the other k that give it (k exp(a / k) is U-shaped)
    residual: float  # max |log(expected / logged)| at k: about 0.01 where eq. 4 with this k wrote the logs


def read_ticks(path: str) -> list[Tick]:
    """Every line of a stats.jsonl that logs the scores and both losses; a line that is not JSON is named."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.readlines()
    except (OSError, UnicodeDecodeError) as err:
        raise StatsError(f"{path}: cannot read it ({getattr(err, 'strerror', None) or err})") from None
    return read_ticks_from_lines(lines, path)


def read_ticks_from_lines(lines: list[str], path: str) -> list[Tick]:
    ticks = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            stats = json.loads(line)
            if not all(key in stats for key in NEEDED):
                continue
            values = [float(stats[key][field]) for key in NEEDED[:2] for field in ("mean", "std")]
            values += [float(stats["Loss/G/loss"]["mean"]), float(stats["Loss/D/loss"]["mean"])]
            kimg = float(stats.get("Progress/kimg", {}).get("mean", float("nan")))
        except (ValueError, TypeError, KeyError, AttributeError, RecursionError):
            raise StatsError(f"{path}, line {number}: not a stats.jsonl line with mean/std of {NEEDED}") from None
        if not all(math.isfinite(v) for v in values[:4]) or not (math.isfinite(values[4]) or math.isfinite(values[5])):
            continue  # a tick whose scores, or both losses, overflowed says nothing about k
        real_mean, real_std, fake_mean, fake_std, g_loss, d_loss = values
        ticks.append(Tick(kimg, real_mean, real_std, fake_mean, fake_std, g_loss, d_loss))
    if not ticks:
        raise StatsError(f"{path}: no line logs all of {', '.join(NEEDED)}; is it a StyleGAN2-ADA stats.jsonl?")
    return ticks


def expected_losses(tick: Tick, loss: str, ks: np.ndarray, m: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(E[G's term], E[D's fake + real terms]) for each k, the logits normal with the tick's mean and std."""
    nodes, weights = np.polynomial.hermite_e.hermegauss(QUADRATURE_POINTS)
    weights = torch.from_numpy(weights / weights.sum())
    fake = torch.from_numpy(tick.fake_mean + tick.fake_std * nodes)
    real = torch.from_numpy(tick.real_mean + tick.real_std * nodes)
    g, d = np.empty(len(ks)), np.empty(len(ks))
    for i, k in enumerate(ks):
        objective = GanObjective(LossConfig(loss, k=float(k), m=m))
        g[i] = float((objective.g_fake(fake) * weights).sum())
        d[i] = float(((objective.d_fake(fake) + objective.d_real(real)) * weights).sum())
    return g, d


def fit_tick(tick: Tick, loss: str = "rlo", m: float | None = None) -> Fit:
    """The best k for both logged losses; where one is not finite (a run whose G loss overflowed), the largest k
    that gives the other, with its smaller roots listed."""
    g, d = expected_losses(tick, loss, K_GRID, m)
    logs = []
    for name, logged, predicted in (("G", tick.g_loss, g), ("D", tick.d_loss, d)):
        if math.isfinite(logged) and logged > 0:
            with np.errstate(divide="ignore", invalid="ignore"):
                logs.append((name, np.log(predicted / logged)))
    if not logs:
        raise StatsError(f"kimg {tick.kimg:g}: no finite positive loss (G {tick.g_loss:g}, D {tick.d_loss:g})")
    misfit = sum(r**2 for _, r in logs)
    misfit[~np.isfinite(misfit)] = np.inf
    best, roots = int(np.argmin(misfit)), ()
    if len(logs) == 1:
        r = logs[0][1]
        crossings = [i for i in range(len(r) - 1) if np.isfinite(r[i : i + 2]).all() and r[i] * r[i + 1] <= 0]
        if crossings:
            best = max(crossings, key=lambda i: i)
            roots = tuple(float(K_GRID[i]) for i in crossings if i != best)
    fitted_on = "+".join(name for name, _ in logs)
    residual = max(abs(float(r[best])) for _, r in logs)
    return Fit(tick, float(K_GRID[best]), float(g[best]), float(d[best]), fitted_on, roots, residual)


def summary(fits: list[Fit]) -> dict[str, float]:
    """Median and range of k over the ticks that a k fits (residual <= RESIDUAL_OK)."""
    ks = np.array([f.k for f in fits if f.residual <= RESIDUAL_OK])
    if not len(ks):
        return dict(ticks=0, unfitted=len(fits))
    return dict(
        ticks=len(ks),
        unfitted=len(fits) - len(ks),
        median_k=float(np.median(ks)),
        min_k=float(ks.min()),
        max_k=float(ks.max()),
    )


@click.command(help=verbatim(__doc__))
@click.argument("stats_jsonl", type=str)
@click.option("--loss", default="rlo", show_default=True, help="The rooted member whose k to infer (rlo, rlo-eq9)")
@click.option("--m", type=float, default=None, help="m, if the run set it apart from k [default: m = k]")
@click.option("--compare-k", type=float, multiple=True, default=(2.0,), show_default=True, help="Also show these k")
@click.option("--json", "json_path", default=None, help="Also write the fits here")
def main(stats_jsonl: str, loss: str, m: float | None, compare_k: tuple[float, ...], json_path: str | None) -> None:
    try:
        LossConfig(loss, k=2.0, m=m)  # an unknown member or m is refused here, not per tick
        ticks = read_ticks(stats_jsonl)
        fits = [fit_tick(tick, loss, m) for tick in ticks]
    except StatsError as err:
        raise click.ClickException(str(err)) from None
    except (ValueError, TypeError) as err:
        raise click.UsageError(f"--loss={loss} --m={m}: {err}") from None
    shown = [float(k) for k in compare_k]
    header = f"{'kimg':>8} {'scores real':>14} {'scores fake':>14} {'G logged':>9} {'D logged':>9}"
    header += f" {'best k':>7} {'resid':>6} on  "
    header += "".join(f" {'G,D at k=' + format(k, 'g'):>18}" for k in shown)
    click.echo(f"{stats_jsonl}: {loss}, m = {'k' if m is None else m}; logits taken as normal per tick\n{header}")
    for fit in fits:
        t = fit.tick
        row = f"{t.kimg:>8.1f} {t.real_mean:>7.3f}±{t.real_std:<6.3f} {t.fake_mean:>7.3f}±{t.fake_std:<6.3f}"
        row += f" {t.g_loss:>9.3f} {t.d_loss:>9.3f} {fit.k:>7.3g} {fit.residual:>6.3f} {fit.fitted_on:<3}"
        for k in shown:
            g, d = expected_losses(t, loss, np.array([k]), m)
            row += f" {g[0]:>8.3f},{d[0]:>9.3f}"
        click.echo(row + (f"  (also k = {', '.join(f'{k:.3g}' for k in fit.other_roots)})" if fit.other_roots else ""))
    s = summary(fits)
    if s["ticks"]:
        spread = f"range {s['min_k']:.3g}-{s['max_k']:.3g}"
        click.echo(f"k fitted over {s['ticks']} ticks: median {s['median_k']:.3g} ({spread})")
    if s["unfitted"]:
        click.echo(
            f"{s['unfitted']} ticks fit no k of {loss} within {RESIDUAL_OK:.0%} (resid > {RESIDUAL_OK}): "
            f"their losses are not {loss}'s with m = {'k' if m is None else m} (CE, another member or pairing?)"
        )
    if json_path:
        record = dict(source=stats_jsonl, loss=loss, m=m, summary=s, fits=[dataclasses.asdict(f) for f in fits])
        atomic_write(json_path, lambda f: f.write(json.dumps(record, indent=1).encode()))
        click.echo(f"wrote {json_path}")


if __name__ == "__main__":
    main()
