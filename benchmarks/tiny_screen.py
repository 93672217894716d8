"""Screening runs for the CPU `tiny` config: each candidate trained once for about 4 minutes on 2 cores.

Each candidate is an ordinary train.py run on the embedded digits (seed 0, --aug=noaug, the digits classifier's
cls2k scored at three snapshots), with its own length so that every run gets about the same training time. This
chose the candidates for the 3-seed check (benchmarks/bench_first_command.py); it is one seed each, a screen, not
a comparison with intervals (compare.py makes those).

    python benchmarks/tiny_screen.py --outdir=screen          # runs what is missing (rerun to resume), then
    python benchmarks/tiny_screen.py --outdir=screen --json=benchmarks/results/tiny_screen.json   # the table
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import click

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks import results_file  # noqa: E402
from dnnlib.cli import verbatim  # noqa: E402

COMMON = ["--aug=noaug", "--metrics=cls2k", "--seed=0"]
RPGAN = ["--pairing=relativistic", "--r2=1"]
LR005 = ["--glr=0.005", "--dlr=0.005"]  # the tiny config's lr before the first round chose 0.01
# Every candidate spells out what it changes from today's tiny config (16 channels at 32x32 and 32 below, lr 0.01,
# batch 16, R1 gamma 0.3, G_ema half-life 1 kimg ramped up over 5 % of the images), so that its command means what
# it meant when it ran. Rounds 1 and 2 and most of round 3 ran on the config before round 3: 32 channels at 32x32
# and gamma 1.
BEFORE_ROUND3 = ["--cbase=1024", "--gamma=1"]  # a candidate's own flags come after, and click keeps the last
CANDIDATES: dict[str, list[str]] = {
    # Round 1: capacity, batch, learning rate and pairing (the config then had 64 channels and lr 0.005).
    "rp64": [*BEFORE_ROUND3, "--cmax=64", *LR005, *RPGAN, "--kimg=22", "--snap=11"],
    "rp32": [*BEFORE_ROUND3, "--cmax=32", *LR005, *RPGAN, "--kimg=27", "--snap=9"],
    "rp32b32": [*BEFORE_ROUND3, "--cmax=32", *LR005, "--batch=32", *RPGAN, "--kimg=36", "--snap=12"],
    "rp32g03": [
        *BEFORE_ROUND3,
        "--cmax=32",
        *LR005,
        "--pairing=relativistic",
        "--gamma=0.3",
        "--r2=0.3",
        "--kimg=27",
        "--snap=9",
    ],
    "ce32": [*BEFORE_ROUND3, "--cmax=32", *LR005, "--kimg=30", "--snap=10"],
    "rp32map1": [*BEFORE_ROUND3, "--cmax=32", *LR005, "--map-depth=1", *RPGAN, "--kimg=27", "--snap=9"],
    # The standard pairing (the config is the baseline every loss is compared against, so it keeps StyleGAN2's loss):
    "ce64": [*BEFORE_ROUND3, "--cmax=64", *LR005, "--kimg=24", "--snap=8"],
    "ce32lr": [*BEFORE_ROUND3, "--cmax=32", "--glr=0.01", "--dlr=0.01", "--kimg=30", "--snap=10"],
    "ce32b32": [*BEFORE_ROUND3, "--cmax=32", *LR005, "--batch=32", "--kimg=40", "--snap=10"],
    "ce32b32lr": [*BEFORE_ROUND3, "--cmax=32", "--batch=32", "--glr=0.01", "--dlr=0.01", "--kimg=40", "--snap=10"],
    "ce32lr2": [*BEFORE_ROUND3, "--cmax=32", "--glr=0.02", "--dlr=0.02", "--kimg=30", "--snap=10"],
    "ce64lr": [*BEFORE_ROUND3, "--cmax=64", "--glr=0.01", "--dlr=0.01", "--kimg=24", "--snap=8"],
    # Round 2, from the round-1 winner (ce32lr, now the config): G_ema's horizon, R1's weight, D's learning rate
    # and the mapping depth, each at 28 kimg.
    "ema3": [*BEFORE_ROUND3, "--ema=3", "--ema-rampup=0.1", "--kimg=28", "--snap=7"],
    "ema6": [*BEFORE_ROUND3, "--ema=6", "--ema-rampup=0.25", "--kimg=28", "--snap=7"],
    "gamma03": [*BEFORE_ROUND3, "--gamma=0.3", "--kimg=28", "--snap=7"],
    "gamma01": [*BEFORE_ROUND3, "--gamma=0.1", "--kimg=28", "--snap=7"],
    "dlr02": [*BEFORE_ROUND3, "--dlr=0.02", "--kimg=28", "--snap=7"],
    "map1": [*BEFORE_ROUND3, "--map-depth=1", "--kimg=28", "--snap=7"],
    # Round 3: every unconditional candidate ended at 0.5-0.74 of samples classified with confidence >= 0.9. A
    # conditional G (the digits' own labels, StyleGAN2-ADA's --cond) commits each sample to one class; then the
    # batch and R1's weight, which decide how much of the 4 minutes goes to updates.
    "cond": [*BEFORE_ROUND3, "--cond=1", "--kimg=28", "--snap=14"],
    "condb32": [*BEFORE_ROUND3, "--cond=1", "--batch=32", "--kimg=40", "--snap=10"],
    "condg03": [*BEFORE_ROUND3, "--cond=1", "--gamma=0.3", "--kimg=28", "--snap=14"],
    "condb32g03": [*BEFORE_ROUND3, "--cond=1", "--batch=32", "--gamma=0.3", "--kimg=40", "--snap=10"],
    # Half the channels at 32x32 (16; 32 below), where most of the multiply-adds are: about 17 % less time per kimg.
    "condg03c512": ["--cond=1", "--cbase=512", "--gamma=0.3", "--kimg=28", "--snap=14"],
    "condc512": ["--cond=1", "--cbase=512", "--gamma=1", "--kimg=28", "--snap=14"],
    # 16 channels at 32x32 and 24 kimg with gamma 1 (README's run, seeds 0-2: 0.923, 0.893, 0.891) against R1
    # gamma 0.3 on the same three seeds, which was ahead at 14 kimg above; gamma 0.3 became the config.
    "cfg3g03s0": ["--cond=1", "--cbase=512", "--gamma=0.3", "--kimg=24", "--snap=12"],
    "cfg3g03s1": ["--cond=1", "--cbase=512", "--gamma=0.3", "--kimg=24", "--snap=12", "--seed=1"],
    "cfg3g03s2": ["--cond=1", "--cbase=512", "--gamma=0.3", "--kimg=24", "--snap=12", "--seed=2"],
}


def summary(folder: Path) -> dict | None:
    runs = [p for p in folder.iterdir() if p.is_dir()] if folder.is_dir() else []
    if len(runs) != 1 or not (runs[0] / "metric-cls2k.jsonl").is_file():
        return None
    lines = [json.loads(line) for line in (runs[0] / "metric-cls2k.jsonl").read_text().splitlines() if line.strip()]
    stats = [json.loads(line) for line in (runs[0] / "stats.jsonl").read_text().splitlines() if line.strip()]
    return dict(
        # The sum of the tick times, slowed by whatever else the machine ran: the candidates' speeds are measured
        # elsewhere (benchmarks/bench_first_command.py); compare the runs here by kimg.
        training_s=sum(s["Timing/sec_per_tick"]["mean"] for s in stats),
        kimg=stats[-1]["Progress/kimg"]["mean"],
        snapshots={
            r["snapshot_pkl"]: {k: round(r["results"][k], 4) for k in ("cls2k_confident", "cls2k_class_entropy")}
            for r in lines
        },
    )


@click.command(help=verbatim(__doc__))
@click.option("--outdir", required=True, help="one folder per candidate under it")
@click.option("--json", "json_path", default=None, help="write the table of what has finished, do not train")
def main(outdir: str, json_path: str | None) -> None:
    root = Path(outdir)
    if json_path is not None:
        table = {name: summary(root / name) for name in CANDIDATES}
        results_file.write(
            json_path,
            command="python3 benchmarks/tiny_screen.py --outdir=... --json=" + json_path,  # the folder is local
            train_commands={name: " ".join(["train.py", *COMMON, *args]) for name, args in CANDIDATES.items()},
            runs={name: row for name, row in table.items() if row is not None},
        )
        return
    for name, args in CANDIDATES.items():
        folder = root / name
        if (folder / "done").exists():
            continue
        command = [sys.executable, str(REPO / "train.py"), f"--outdir={folder}", *COMMON, *args]
        print(" ".join(command[1:]), flush=True)
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        (folder / "done").touch()
    os.sync()


if __name__ == "__main__":
    main()
