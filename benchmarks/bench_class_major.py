"""The layout rule of rlo.fused (`class_dim`): forward+backward of the fused rooted loss with the log-softmax over
rows [N, C] against over the transposed, class-major view [C, N], on a grid of batch sizes, class counts and
dtypes, and which one the rule takes in each cell.

    python3 benchmarks/bench_class_major.py --json=benchmarks/results/class_major_avx512.json
    ATEN_CPU_CAPABILITY=avx2 python3 benchmarks/bench_class_major.py --json=benchmarks/results/class_major_avx2.json

The two routes run alternately in blocks of calls, several rounds, so drift hits both alike; a figure is the median
per call. "rule / best" is the time of the route the rule takes over the faster one's: 1.00 where it picks the
winner.
"""

from __future__ import annotations

import os
import statistics
import sys

import click
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import (
    results_file,  # noqa: E402
    timing,  # noqa: E402
)
from dnnlib.cli import verbatim  # noqa: E402
from rlo import functional as RF  # noqa: E402
from rlo import fused  # noqa: E402

BATCHES = (8, 16, 32, 64, 128, 512, 4096)
CLASSES = (2, 3, 4, 6, 8, 10, 12, 15, 16, 24, 32, 64)
DTYPES = {"float32": torch.float32, "float64": torch.float64}


def time_cell(n: int, c: int, dtype: torch.dtype, rounds: int) -> dict:
    logits = (torch.randn(n, c, dtype=dtype) * 3).requires_grad_(True)
    target = torch.randint(0, c, (n,))
    t_max = RF.eq4_exponent_cap(dtype, 3.0, 3.0)

    def step(dim):
        logits.grad = None
        fused.rooted_index_loss(logits, target, 3.0, 3.0, "eq4", t_max, "mean", RF._rooted_general, dim).backward()

    calls = max(5, min(400, int(2e5 / (n * c))))  # a block of about 5-20 ms
    per_call = {1: [], 0: []}
    for _ in range(rounds):
        for dim in (1, 0):
            run = timing.measure(lambda dim=dim: [step(dim) for _ in range(calls)], 1, warmup=1)
            per_call[dim].append(run.wall[0] / calls * 1e6)
    rows, cols = statistics.median(per_call[1]), statistics.median(per_call[0])
    chosen = fused.class_dim(logits.detach())
    return dict(
        rows_us=rows,
        class_major_us=cols,
        class_major_over_rows=cols / rows,
        rule=("class-major" if chosen == 0 else "rows"),
        rule_over_best=(cols if chosen == 0 else rows) / min(rows, cols),
    )


@click.command(help=verbatim(__doc__))
@click.option("--rounds", type=click.IntRange(min=1), default=7, show_default=True)
@click.option("--json", "json_path", metavar="PATH", help="Write the figures here (with the command and date)")
def main(rounds, json_path):
    torch.set_num_threads(1)
    capability = torch.backends.cpu.get_cpu_capability()
    print(f"fused rooted loss fwd+bwd, 1 thread, CPU kernels {capability}: class-major / rows (rule's pick *)")
    cells = {}
    for dtype_name, dtype in DTYPES.items():
        print(f"{dtype_name}  C: " + " ".join(f"{c:>6d}" for c in CLASSES))
        for n in BATCHES:
            line = []
            for c in CLASSES:
                cell = time_cell(n, c, dtype, rounds)
                cells[f"{dtype_name} {n}x{c}"] = cell
                line.append(f"{cell['class_major_over_rows']:5.2f}{'*' if cell['rule'] == 'class-major' else ' '}")
            print(f"  N={n:<5d}    " + " ".join(line))
    worst = max(cells.items(), key=lambda item: item[1]["rule_over_best"])
    taken = [cell["class_major_over_rows"] for cell in cells.values() if cell["rule"] == "class-major"]
    summary = dict(
        worst_rule_over_best=worst[1]["rule_over_best"],
        worst_cell=worst[0],
        class_major_taken=len(taken),
        class_major_taken_ratio_range=[min(taken), max(taken)] if taken else None,
    )
    print(
        f"rule / best: worst {summary['worst_rule_over_best']:.2f} ({summary['worst_cell']}); class-major taken in "
        f"{len(taken)} of {len(cells)} cells"
        + (f", at {min(taken):.2f}-{max(taken):.2f}x the rows' time" if taken else "")
    )
    if json_path:
        results_file.write(
            json_path,
            torch=torch.__version__,
            cpu_capability=capability,
            rule=dict(min_numel=fused.CLASS_MAJOR_MIN_NUMEL, classes_below=fused._short_row_classes()),
            summary=summary,
            cells=cells,
        )


if __name__ == "__main__":
    main()
