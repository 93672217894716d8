"""calc_metrics.py and generate.py refuse a damaged or hostile network file with its one-line reason, no traceback."""

from __future__ import annotations

import json
import os
import pickle
import re
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from conftest import tiny_g

from commands import calc_metrics_command as calc_metrics
from commands import generate_command
from training import checkpoint
from training.networks import Generator

REPO = Path(__file__).resolve().parents[1]
TINY_G = tiny_g(8, base=32, cmax=4, layers=1)


class CallOnLoad:
    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def hostile_pickle(folder: Path) -> tuple[Path, str]:
    path = folder / "evil.pkl"
    path.write_bytes(pickle.dumps({"G_ema": CallOnLoad(os.system, f"touch {folder / 'pwned'}")}, protocol=4))
    return path, "refusing to load global (os|posix).system"


def damaged_snapshot(folder: Path) -> tuple[Path, str]:
    path = folder / "damaged.pt"
    checkpoint.save_snapshot(path, dict(G_ema=Generator(**TINY_G)))
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as archive:
        info = max((i for i in archive.infolist() if "/data/" in i.filename), key=lambda i: i.file_size)
    name_len, extra_len = struct.unpack_from("<HH", data, info.header_offset + 26)
    data[info.header_offset + 30 + name_len + extra_len + 3] ^= 0x04
    path.write_bytes(bytes(data))
    return path, r"is corrupt: tensor \['networks'\]\['G_ema'\]\['state_dict'\]\['[^']+'\] fails its sha256 digest"


def huge_kwargs_snapshot(folder: Path) -> tuple[Path, str]:
    good = folder / "good.pt"
    checkpoint.save_snapshot(good, dict(G_ema=Generator(**TINY_G)))
    payload = torch.load(good, weights_only=True)
    entry = payload["networks"]["G_ema"]
    entry["init_kwargs_json"] = json.dumps(dict(json.loads(entry["init_kwargs_json"]), z_dim=4_000_000))
    payload["digests"] = checkpoint.tensor_digests(payload)
    path = folder / "huge.pt"
    torch.save(payload, path)
    return path, r"Generator kwarg z_dim=4000000 is out of bounds"


BAD_FILES = {
    "hostile pickle": hostile_pickle,
    "damaged snapshot": damaged_snapshot,
    "huge kwargs": huge_kwargs_snapshot,
}


def run_cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", RLO_CACHE_DIR=str(cwd / "cache"), DNNLIB_CACHE_DIR=str(cwd / "dnn"))
    return subprocess.run([sys.executable, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def generate():
    return generate_command


def refusal(result, path: Path, reason: str, exit_code: int) -> str:
    """The one 'Error:' line of a CliRunner result that exited cleanly (no exception escaped)."""
    assert result.exit_code == exit_code and isinstance(result.exception, SystemExit), result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and str(path) in errors[0] and re.search(reason, errors[0]), result.output
    return errors[0]


@pytest.mark.parametrize("kind", list(BAD_FILES))
def test_calc_metrics_refuses_with_the_one_line_reason(tmp_path, kind):
    path, reason = BAD_FILES[kind](tmp_path)
    result = CliRunner().invoke(calc_metrics.main, [f"--network={path}", "--metrics=none"])
    assert refusal(result, path, reason, 1).startswith(f"Error: --network: {path}")
    assert result.output.strip().splitlines() == [refusal(result, path, reason, 1)]
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize("kind", list(BAD_FILES))
def test_generate_refuses_with_the_one_line_reason(tmp_path, generate, kind):
    path, reason = BAD_FILES[kind](tmp_path)
    result = CliRunner().invoke(generate.main, [f"--network={path}", "--seeds=0", f"--outdir={tmp_path / 'out'}"])
    assert re.search(rf"Invalid value for '?--network'?: {re.escape(str(path))}", refusal(result, path, reason, 2))
    assert not (tmp_path / "out").exists() and not (tmp_path / "pwned").exists()


@pytest.mark.parametrize("script, code", [("calc_metrics.py", 1), ("generate.py", 2)])
def test_a_real_process_shows_no_traceback(tmp_path, script, code):
    path, reason = hostile_pickle(tmp_path)
    args = ["--metrics=none"] if script == "calc_metrics.py" else ["--seeds=0", f"--outdir={tmp_path / 'out'}"]
    proc = run_cli([str(REPO / script), f"--network={path}", *args], tmp_path)
    assert proc.returncode == code and "Traceback" not in proc.stdout + proc.stderr, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and re.search(reason, errors[0]), proc.stderr
    if script == "calc_metrics.py":
        assert proc.stderr.strip().splitlines() == errors and proc.stdout == ""
