"""Is SWD a useful signal? Its rank correlation with the digits metric fdd2k_full over the snapshots of digits runs.

Scores every network-snapshot-* of the given run folders with fdd2k_full and swd2k (same seed, G_ema) and prints
Spearman's rho between them (and with cls2k_score, higher is better, so rho < 0 agrees), with the command and
date in the --json file.

    python benchmarks/swd_vs_fdd.py RUN_DIR [RUN_DIR ...] --json=benchmarks/results/swd_vs_fdd.json
"""

from __future__ import annotations

import glob
import os
import sys

import click
import scipy.stats
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import results_file  # noqa: E402
from dnnlib.cli import verbatim  # noqa: E402
from metrics import metric_main  # noqa: E402
from training.checkpoint import load_network  # noqa: E402

METRICS = ("fdd2k_full", "swd2k", "cls2k")


def score(snapshot: str) -> dict[str, float]:
    network = load_network(snapshot)
    G = network["G_ema"]
    kwargs = dict(network.get("training_set_kwargs") or {})
    out = {}
    for metric in METRICS:
        result = metric_main.calc_metric(metric, G=G, dataset_kwargs=kwargs, device=torch.device("cpu"))
        out.update(result["results"])
    return out


@click.command(help=verbatim(__doc__))
@click.argument("run_dirs", nargs=-1, required=True)
@click.option("--json", "json_path", default=None, help="Also write every snapshot's scores and rho here")
def main(run_dirs: tuple[str, ...], json_path: str | None) -> None:
    rows = []
    for run_dir in run_dirs:
        for snapshot in sorted(glob.glob(os.path.join(glob.escape(run_dir), "network-snapshot-*.pt"))):
            values = score(snapshot)
            rows.append(dict(snapshot=snapshot, **values))
            print(
                f"{snapshot}: fdd2k_full {values['fdd2k_full']:.1f}, swd2k {values['swd2k']:.2f}, "
                f"cls2k_score {values['cls2k_score']:.2f}",
                flush=True,
            )
    fdd, swd, cls = ([row[key] for row in rows] for key in ("fdd2k_full", "swd2k", "cls2k_score"))
    rho_fdd = scipy.stats.spearmanr(swd, fdd)
    rho_cls = scipy.stats.spearmanr(swd, cls)
    print(f"{len(rows)} snapshots: Spearman rho(swd2k, fdd2k_full) = {rho_fdd.statistic:.3f} (p {rho_fdd.pvalue:.2g})")
    print(f"Spearman rho(swd2k, cls2k_score) = {rho_cls.statistic:.3f} (p {rho_cls.pvalue:.2g})")
    if json_path:
        results_file.write(
            json_path,
            snapshots=len(rows),
            spearman_swd_fdd=dict(rho=float(rho_fdd.statistic), p=float(rho_fdd.pvalue)),
            spearman_swd_cls_score=dict(rho=float(rho_cls.statistic), p=float(rho_cls.pvalue)),
            rows=rows,
        )


if __name__ == "__main__":
    main()
