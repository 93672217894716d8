"""README's first command, timed and scored: what a newcomer sees, over several seeds.

Runs `train.py` with the flags of README's first command, read from README.md (the embedded digits, `--cfg=auto`,
i.e. the tiny config on a CPU), once per seed with `--seed=S` and the digits classifier's `cls2k` scored beside the
default `fdd2k_full` at every snapshot. Reports per seed and as means: the training time (the sum of the tick times:
the training loop without snapshots and metrics), the process's wall time, and the last snapshot's
`cls2k_confident` (the share of samples the digits classifier is >= 0.9 sure of), `cls2k_class_entropy` (nats;
ln 10 = 2.30 when every digit is equally frequent) and `fdd2k_full`, and the real digits' cls scores on the same
classifier (the ceiling).

    python benchmarks/bench_first_command.py --seeds=3 --json=benchmarks/results/first_command.json \\
        --figure=docs/figures/first_command_fakes.png
"""

from __future__ import annotations

import json
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import click

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from benchmarks import results_file  # noqa: E402
from dnnlib.cli import verbatim  # noqa: E402
from dnnlib.image_data import load_digits_images  # noqa: E402
from dnnlib.util import source_version  # noqa: E402
from metrics import digits_classifier, digits_metrics  # noqa: E402

SCORES = ("cls2k_confident", "cls2k_class_entropy", "fdd2k_full")


def cpu_description() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()}, {os.cpu_count()} logical CPUs"
    except OSError:
        pass
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} logical CPUs"


def last_results(run_dir: Path) -> dict[str, float]:
    """The metric values of the run's last snapshot."""
    values: dict[str, float] = {}
    for path in sorted(run_dir.glob("metric-*.jsonl")):
        lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        last = max(lines, key=lambda r: r["snapshot_pkl"])
        values.update({k: float(v) for k, v in last["results"].items()})
        values["snapshot"] = last["snapshot_pkl"]
    return values


def real_scores() -> dict[str, float]:
    """cls scores of the 1,797 real digits with the same classifier: the ceiling a generator is read against."""
    detector = digits_classifier.build_digits_detector(digits_classifier.ensure_classifier_file())
    images, _ = load_digits_images(32, 3)
    with torch.no_grad():
        probs = detector(torch.from_numpy(images)).numpy()
    confident, _, class_entropy = digits_metrics.classifier_scores(probs)
    return dict(cls_confident=confident, cls_class_entropy=class_entropy)


def readme_train_flags(readme: Path = REPO / "README.md") -> list[str]:
    """The flags of `train.py` in README's first command, but --outdir: the run this benchmark times is the one
    README gives, whatever it says today."""
    text = readme.read_text(encoding="utf-8")
    block = text.split("```bash\n", 1)[1].split("```", 1)[0] if "```bash\n" in text else ""
    first = block.splitlines()[0] if block.strip() else ""
    parts = [part for part in first.split("&&") if "train.py" in part]
    if not parts:
        raise SystemExit(f"{readme}: no train.py command on the first line of its first bash block")
    words = shlex.split(parts[0])
    flags = words[[w.endswith("train.py") for w in words].index(True) + 1 :]
    return [flag for flag in flags if not flag.startswith("--outdir")]


def run_seed(outdir: Path, seed: int, flags: list[str]) -> dict:
    command = [sys.executable, str(REPO / "train.py"), f"--outdir={outdir}", *flags, f"--seed={seed}"]
    command.append("--metrics=fdd2k_full,cls2k")
    start = time.perf_counter()
    proc = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(
            f"seed {seed}: train.py failed ({proc.returncode}):\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}"
        )
    (run_dir,) = [p for p in outdir.iterdir() if p.is_dir()]
    stats = [json.loads(line) for line in (run_dir / "stats.jsonl").read_text().splitlines() if line.strip()]
    training_s = sum(s["Timing/sec_per_tick"]["mean"] for s in stats)
    scores = last_results(run_dir)
    last_fakes = sorted(run_dir.glob("fakes0*.png"))[-1]
    return dict(
        seed=seed,
        run=run_dir.name,
        kimg=stats[-1]["Progress/kimg"]["mean"],
        training_s=training_s,
        process_s=wall,
        **scores,
        fakes=last_fakes,
    )


@click.command(help=verbatim(__doc__))
@click.option("--seeds", type=click.IntRange(min=1), default=3, show_default=True, help="seeds 0..N-1")
@click.option("--json", "json_path", default=None, help="write the results here")
@click.option("--figure", default=None, help="copy seed 0's last fakes grid here")
@click.option("--reals-only", is_flag=True, help="only score the real digits, into the existing --json file")
def main(seeds: int, json_path: str | None, figure: str | None, reals_only: bool) -> None:
    reals = real_scores()
    print(f"real digits: confident {reals['cls_confident']:.3f}, class entropy {reals['cls_class_entropy']:.3f}")
    if reals_only:
        if json_path is None:
            raise click.UsageError("--reals-only needs --json (the results file to add them to)")
        result = json.loads(Path(json_path).read_text())
        result["reals"] = reals
        results_file.write(json_path, **result)  # the file's own command and date stay
        return
    flags = readme_train_flags()
    train_command = " ".join(["python3 train.py --outdir=...", *flags, "--seed=S --metrics=fdd2k_full,cls2k"])
    print(f"README's first command, per seed: {train_command}")
    runs = []
    with tempfile.TemporaryDirectory(prefix="first-command-") as folder:
        for seed in range(seeds):
            run = run_seed(Path(folder) / f"seed{seed}", seed, flags)
            scores = ", ".join(f"{k} {run[k]:.3f}" for k in SCORES if k in run)
            times = f"training {run['training_s']:.0f} s (process {run['process_s']:.0f} s)"
            print(f"seed {seed}: {run['kimg']:.0f} kimg, {times} | {scores}", flush=True)
            if figure is not None and seed == 0:
                os.makedirs(os.path.dirname(os.path.abspath(figure)), exist_ok=True)
                shutil.copyfile(run["fakes"], figure)
            run["fakes"] = run["fakes"].name
            runs.append(run)
    means = {k: statistics.mean(r[k] for r in runs) for k in ("training_s", "process_s", *SCORES) if k in runs[0]}
    print("mean over seeds: " + ", ".join(f"{k} {v:.3f}" for k, v in means.items()))
    if json_path is not None:
        results_file.write(
            json_path,
            train_command=train_command,
            code=source_version(__file__),
            machine=cpu_description(),
            load_average_end=os.getloadavg(),
            means=means,
            reals=reals,
            runs=runs,
            figure=figure,
        )


if __name__ == "__main__":
    main()
