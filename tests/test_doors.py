"""Every front door that writes files, under the same hostile conditions: a read-only folder, a full disk, a damaged
network file, a missing input. Each must end in one line naming the culprit, with no traceback, and leave the output
folder as it was. A new command joins by adding its row to DOORS; it then inherits every case.

calc_metrics writes beside the snapshot it scores, so its snapshot is placed in the output folder first (PLACED).
Its product is the printed result: where it cannot keep the record it still prints the result and warns in one line
(WARNS), as documented in docs/metrics.md.

The file system failures are simulated in-process (the OSError a read-only or full file system raises, at the calls
that create or write files under the output folder), so they run anywhere, as root too.
"""

import builtins
import errno
import importlib
import importlib.util
import io
import json
import os
import shutil
import tempfile

import metrics_support
import numpy as np
import PIL.Image
import pytest
from click.testing import CliRunner
from conftest import perturbed

from training import checkpoint
from training.networks import Generator

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# door: (script or module, arguments with {network}, {images}, {run} and {out} filled in per test)
DOORS = {
    "generate": ("generate", ["--network={network}", "--seeds=0-5", "--outdir={out}/images"]),
    "style_mixing": (
        "style_mixing",
        ["--network={network}", "--rows=1,2", "--cols=3,4", "--styles=0-3", "--outdir={out}/mix"],
    ),
    "dataset_tool zip": ("dataset_tool", ["--source={images}", "--dest={out}/data/set.zip"]),
    "dataset_tool folder": ("dataset_tool", ["--source={images}", "--dest={out}/data/set"]),
    "projector": (
        "projector",
        ["--network={network}", "--target={target}", "--num-steps=2", "--outdir={out}/proj", "--detector-dir={vgg}"],
    ),
    "calc_metrics": (
        "calc_metrics",
        ["--network={out}/run/network-snapshot-000000.pt", "--metrics=swd2k", "--num-gen=16", "--data={data16}"],
    ),
    "plot_metrics": ("plot_metrics", ["--run-dir={run}", "--metric=swd2k", "--out={out}/plots/swd.png"]),
    "logreg experiment": ("experiments.logreg", ["--datasets=wine", "--steps=3", "--out={out}/logreg"]),
    "spiral experiment": ("experiments.spiral", ["--seeds=1", "--iterations", "2", "2", "2", "--out={out}/spiral"]),
    "classify experiment": (
        "experiments.classify",
        ["--epochs=1", "--max-images=64", "--losses=ce", "--seeds=1", "--out={out}/classify"],
    ),
}
DISK_BUDGET = {
    "logreg experiment": 6000,
    "spiral experiment": 2000,
    "calc_metrics": 100,
}  # bytes written before the disk fills: past the first file of each door
NETWORK_DOORS = ["generate", "style_mixing", "projector", "calc_metrics"]
PLACED = {"calc_metrics": {"run/network-snapshot-000000.pt": "network"}}  # door: {path under out: input}
WARNS = {"calc_metrics"}  # doors that print their result and warn when the record cannot be written


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("door_inputs")
    G = Generator(
        z_dim=8,
        c_dim=0,
        w_dim=8,
        img_resolution=16,
        img_channels=3,
        mapping_kwargs=dict(num_layers=1),
        synthesis_kwargs=dict(channel_base=32, channel_max=8),
    )
    checkpoint.save_snapshot(root / "net.pt", dict(G_ema=perturbed(G, seed=1)))
    (root / "images").mkdir()
    for i in range(6):
        pixels = np.random.RandomState(i).randint(0, 256, size=(12, 12, 3), dtype=np.uint8)
        PIL.Image.fromarray(pixels).save(root / "images" / f"{i}.png")
    (root / "data16").mkdir()
    for i in range(6):
        pixels = np.random.RandomState(10 + i).randint(0, 256, size=(16, 16, 3), dtype=np.uint8)
        PIL.Image.fromarray(pixels).save(root / "data16" / f"{i}.png")
    run = root / "00000-run"
    run.mkdir()
    ticks = [{"Progress/kimg": {"mean": k}, "Timing/total_sec": {"mean": 10.0 * k}} for k in (0, 4, 8)]
    (run / "stats.jsonl").write_text("".join(json.dumps(t) + "\n" for t in ticks))
    scores = [
        {"results": {"swd2k": 9.0 - k}, "metric": "swd2k", "snapshot_pkl": f"network-snapshot-{k:06d}.pt"}
        for k in (0, 4, 8)
    ]
    (run / "metric-swd2k.jsonl").write_text("".join(json.dumps(r) + "\n" for r in scores))
    vgg16_path, *_ = metrics_support.shared_vgg_files()
    return dict(
        network=str(root / "net.pt"),
        images=str(root / "images"),
        data16=str(root / "data16"),
        target=str(root / "images" / "0.png"),
        run=str(run),
        vgg=os.path.dirname(vgg16_path),
    )


def run(door, inputs, out, **overrides):
    script, template = DOORS[door]
    values = dict(inputs, out=str(out), **overrides)
    args = [arg.format(**values) for arg in template]
    module = importlib.import_module(script if "." in script else f"commands.{script}_command")
    return CliRunner().invoke(module.main, args)


def place(door, inputs, out):
    """Copy the inputs a door reads from its output folder there; returns the folder's listing afterwards."""
    for relative, key in PLACED.get(door, {}).items():
        target = out / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(inputs[key], target)
    return listing(out)


def listing(folder):
    return sorted(os.path.relpath(os.path.join(d, f), folder) for d, _, files in os.walk(folder) for f in files + _)


def check_refused(result, *words):
    assert result.exit_code != 0, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    error_lines = [line for line in result.output.splitlines() if line.startswith("Error")]
    assert len(error_lines) == 1, result.output
    for word in words:
        assert word in error_lines[0], result.output


def check_warned(result, *words):
    """The result line printed, then one warning naming why it was not recorded; no traceback."""
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    assert any(line.startswith('{"results"') for line in result.output.splitlines()), result.output
    warnings = [line for line in result.output.splitlines() if line.startswith("warning")]
    assert len(warnings) == 1, result.output
    for word in words:
        assert word in warnings[0], result.output


def check_outcome(door, result, reason):
    if door in WARNS:
        check_warned(result, reason)
    else:
        check_refused(result, reason)


class FailingFileSystem:
    """Under `root`: with EROFS, every call that creates or opens a file for writing fails, as on a read-only
    file system; with ENOSPC, writes fail once `budget` bytes were written there, as on a disk that fills up."""

    def __init__(self, monkeypatch, root, code, budget=0):
        self.root, self.code, self.budget = os.path.abspath(root), code, budget
        real_open, real_os_open, real_mkdir, real_fdopen = builtins.open, os.open, os.mkdir, os.fdopen
        paths = {}  # fd -> path, for os.fdopen

        def guarded_open(file, mode="r", *args, **kwargs):
            handle = real_open(file, mode, *args, **kwargs) if not self.refuses(file, mode) else None
            return self.wrap(handle, file, mode)

        def guarded_os_open(path, flags, *args, **kwargs):
            writing = flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT)
            if writing and self.refuses(path, "w"):
                return None
            fd = real_os_open(path, flags, *args, **kwargs)
            paths[fd] = path
            return fd

        def guarded_fdopen(fd, mode="r", *args, **kwargs):
            return self.wrap(real_fdopen(fd, mode, *args, **kwargs), paths.get(fd, ""), mode)

        def guarded_mkdir(path, *args, **kwargs):
            self.refuses(path, "w")
            return real_mkdir(path, *args, **kwargs)

        monkeypatch.setattr(builtins, "open", guarded_open)
        monkeypatch.setattr(io, "open", guarded_open)
        monkeypatch.setattr(os, "open", guarded_os_open)
        monkeypatch.setattr(os, "fdopen", guarded_fdopen)
        monkeypatch.setattr(os, "mkdir", guarded_mkdir)

    def under_root(self, path) -> bool:
        return isinstance(path, (str, os.PathLike)) and os.path.abspath(os.fspath(path)).startswith(self.root + os.sep)

    def refuses(self, path, mode) -> bool:
        if self.code == errno.EROFS and any(c in mode for c in "wax+") and self.under_root(path):
            raise OSError(self.code, os.strerror(self.code), os.fspath(path))
        return False

    def wrap(self, handle, path, mode):
        if self.code != errno.ENOSPC or not any(c in mode for c in "wax+") or not self.under_root(path):
            return handle
        disk = self

        class FillingFile:
            def __getattr__(self, name):
                return getattr(handle, name)

            def __enter__(self):
                return self

            def __exit__(self, *exc):
                handle.close()

            def __iter__(self):
                return iter(handle)

            def write(self, data):  # what fits is written, as a real disk does, then the error
                if len(data) > disk.budget:
                    handle.write(data[: disk.budget])
                    disk.budget = 0
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                disk.budget -= len(data)
                return handle.write(data)

        return FillingFile()


@pytest.mark.parametrize("door", list(DOORS))
def test_a_read_only_folder_is_one_line_and_nothing_appears(door, inputs, tmp_path, monkeypatch):
    (tmp_path / "kept.txt").write_text("here before")
    before = place(door, inputs, tmp_path)
    FailingFileSystem(monkeypatch, tmp_path, errno.EROFS)
    result = run(door, inputs, tmp_path)
    check_outcome(door, result, "read-only file system")
    assert listing(tmp_path) == before


@pytest.mark.parametrize("door", list(DOORS))
def test_a_disk_that_fills_midway_is_one_line_and_nothing_appears(door, inputs, tmp_path, monkeypatch):
    (tmp_path / "kept.txt").write_text("here before")
    before = place(door, inputs, tmp_path)
    budget = DISK_BUDGET.get(door, 1500)
    disk = FailingFileSystem(monkeypatch, tmp_path, errno.ENOSPC, budget=budget)
    result = run(door, inputs, tmp_path)
    check_outcome(door, result, "no space left on device")
    assert disk.budget < budget  # some files were written before the disk filled
    assert listing(tmp_path) == before
    assert (tmp_path / "kept.txt").read_text() == "here before"


@pytest.mark.parametrize("door", NETWORK_DOORS)
@pytest.mark.parametrize("damage", ["garbage", "truncated", "missing"])
def test_a_bad_network_file_is_one_line_naming_it(door, damage, inputs, tmp_path):
    path = tmp_path / "net.pt"
    if damage == "garbage":
        path.write_bytes(os.urandom(4096))
    elif damage == "truncated":
        with open(inputs["network"], "rb") as file:
            path.write_bytes(file.read()[:2000])
    result = run(door, inputs, tmp_path / "out", network=str(path))
    check_refused(result, "--network")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("door", [d for d in DOORS if d.startswith("dataset_tool")])
def test_a_missing_source_is_one_line_naming_it(door, inputs, tmp_path):
    result = run(door, inputs, tmp_path / "out", images=str(tmp_path / "nowhere"))
    check_refused(result, "nowhere")
    assert not (tmp_path / "out").exists()


def test_the_simulated_failures_are_the_ones_a_file_system_gives(tmp_path, monkeypatch):
    with monkeypatch.context() as patched:
        FailingFileSystem(patched, tmp_path, errno.EROFS)
        with pytest.raises(OSError) as info:
            tempfile.mkstemp(dir=tmp_path)
        assert info.value.errno == errno.EROFS
        with open(os.devnull, "w"):  # outside the folder: untouched
            pass
    with monkeypatch.context() as patched:
        FailingFileSystem(patched, tmp_path, errno.ENOSPC, budget=12)
        with open(tmp_path / "a", "wb") as file:
            file.write(b"0123456789")
            with pytest.raises(OSError) as info:
                file.write(b"abc")
        assert info.value.errno == errno.ENOSPC and (tmp_path / "a").read_bytes() == b"0123456789ab"
