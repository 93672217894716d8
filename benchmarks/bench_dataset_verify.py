"""Cost of checking a dataset before training: opening it (headers of every image) and verify_decodable()
(the first, the last and a sample of images fully decoded), against decoding every image.

    python benchmarks/bench_dataset_verify.py [--reps=5] [--resolution=32] [--sample=256] [--source=sklearn:digits]

The dataset is made once with dataset_tool.py from --source (default: the 1,797 embedded digits) as a zip and
as a folder in a temporary directory, removed at the end. Timings are wall-clock on a warm page cache.
"""

import os
import shutil
import statistics
import sys
import tempfile

import click

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import timing  # noqa: E402
from commands import dataset_tool_command as dataset_tool  # noqa: E402
from dnnlib.cli import verbatim  # noqa: E402
from training.dataset import ImageFolderDataset  # noqa: E402


def _report(name, samples):
    med, lo, hi = statistics.median(samples), min(samples), max(samples)
    print(f"  {name:40s} median {med * 1000:8.1f} ms  (min {lo * 1000:8.1f}, max {hi * 1000:8.1f})", flush=True)


def _time(fn, reps):
    return timing.measure(fn, reps, warmup=0).wall


@click.command(help=verbatim(__doc__))
@click.option("--reps", type=click.IntRange(min=1), default=5, show_default=True)
@click.option("--resolution", type=int, default=32, show_default=True)
@click.option("--sample", type=int, default=256, show_default=True)
@click.option("--source", default="sklearn:digits", show_default=True)
def main(reps, resolution, sample, source):
    tmp = tempfile.mkdtemp(prefix="rlo-bench-verify-")
    try:
        res = f"{resolution}x{resolution}"
        for kind in ("zip", "folder"):
            dest = os.path.join(tmp, "ds.zip" if kind == "zip" else "ds")
            n = dataset_tool.convert_dataset(source, dest, resolution=res, echo=lambda _msg: None, progress=False)
            print(f"{kind}: {n} images {res} from {source}, sample={sample}, {reps} reps")
            _report("open (all headers)", _time(lambda: ImageFolderDataset(dest), reps))
            ds = ImageFolderDataset(dest)
            checked = ds.verify_decodable(sample)
            _report(f"verify_decodable({sample}): {checked} decoded", _time(lambda: ds.verify_decodable(sample), reps))
            _report(f"decode all {n}", _time(lambda: ds.verify_decodable(None), reps))
            ds.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
