"""Offline digits metrics on CPU: training the digits classifier, and fdd2k_full / kdd2k_full / cls2k of a tiny
generator on the embedded digits, with the dataset statistics computed (cold) or read from the cache (warm).

    python benchmarks/bench_digits_metrics.py [--reps 3] [--threads 1] [--num-gen 2000] [--cbase 128] [--cmax 16]

Everything is written to a temporary cache folder (RLO_CACHE_DIR), removed at the end. The generator has random
weights (speed does not depend on them) and train.py's tiny config shape at 32x32.
"""

import os
import shutil
import statistics
import sys
import tempfile
import time

import click
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from dnnlib.cli import verbatim  # noqa: E402


def _report(name, samples):
    med, lo, hi = statistics.median(samples), min(samples), max(samples)
    print(f"  {name:34s} median {med:7.2f} s  (min {lo:7.2f}, max {hi:7.2f})", flush=True)


@click.command(help=verbatim(__doc__))
@click.option("--reps", type=click.IntRange(min=1), default=3, show_default=True)
@click.option("--threads", type=int, default=1, show_default=True, help="torch CPU threads (0: leave the default)")
@click.option("--num-gen", type=int, default=2000, show_default=True)
@click.option("--cbase", type=int, default=128, show_default=True)
@click.option("--cmax", type=int, default=16, show_default=True)
def main(reps, threads, num_gen, cbase, cmax):
    if threads > 0:
        torch.set_num_threads(threads)

    cache = tempfile.mkdtemp(prefix="rlo-bench-digits-")
    os.environ["RLO_CACHE_DIR"] = cache
    from metrics import digits_classifier, metric_main
    from training.networks import Generator

    print(
        f"CPU, {torch.get_num_threads()} thread(s), torch {torch.__version__}; recipe "
        f"{digits_classifier.DEFAULT_RECIPE}; G 32x32 cbase={cbase} cmax={cmax}; {reps} reps"
    )
    try:
        samples, accuracy = [], None
        for _rep in range(reps):
            start = time.perf_counter()
            _state, accuracy = digits_classifier.train_classifier()
            samples.append(time.perf_counter() - start)
        _report(f"train classifier ({accuracy:.1%} held out)", samples)
        digits_classifier.ensure_classifier_file()

        torch.manual_seed(0)
        G = Generator(
            z_dim=64,
            c_dim=0,
            w_dim=64,
            img_resolution=32,
            img_channels=3,
            mapping_kwargs=dict(num_layers=2),
            synthesis_kwargs=dict(channel_base=cbase, channel_max=cmax),
        ).eval()
        kwargs = dict(G=G, dataset_kwargs=dict(path="sklearn:digits", resolution=32), device="cpu")
        stats_dir = os.path.join(cache, "gan-metrics")
        for metric in ("fdd2k_full", "kdd2k_full", "cls2k"):
            metric = metric_main.with_num_gen(metric, num_gen)
            modes = (
                (("no dataset stats", False),)
                if metric.startswith("cls")
                else (("cold dataset stats", True), ("warm dataset stats", False))
            )
            for label, cold in modes:
                samples = []
                for _rep in range(reps):
                    if cold:
                        shutil.rmtree(stats_dir, ignore_errors=True)
                    start = time.perf_counter()
                    metric_main.calc_metric(metric, **kwargs)
                    samples.append(time.perf_counter() - start)
                _report(f"{metric} ({label})", samples)
    finally:
        shutil.rmtree(cache, ignore_errors=True)


if __name__ == "__main__":
    main()
