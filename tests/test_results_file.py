"""benchmarks/results_file.py: a results file names the command that reproduces it, kernel choice included, and
replaces the previous file whole."""

import json
import os

import pytest

from benchmarks import results_file


def test_the_command_names_the_kernel_variables_and_the_script_from_the_root(monkeypatch):
    monkeypatch.setenv("ATEN_CPU_CAPABILITY", "avx2")
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    monkeypatch.setenv("MKL_ENABLE_INSTRUCTIONS", "AVX2")
    script = os.path.join(results_file.ROOT, "benchmarks", "bench_losses.py")
    line = results_file.command([script, "--sizes=64x10", "--json=a b.json"])
    assert line == (
        "ATEN_CPU_CAPABILITY=avx2 MKL_ENABLE_INSTRUCTIONS=AVX2 python3 benchmarks/bench_losses.py "
        "--sizes=64x10 '--json=a b.json'"
    )


def test_write_puts_command_and_date_first_and_keeps_ones_given(tmp_path):
    path = tmp_path / "r.json"
    results_file.write(str(path), figures=[1, 2])
    record = json.loads(path.read_text())
    assert list(record)[:2] == ["command", "date"] and record["figures"] == [1, 2]
    results_file.write(str(path), **dict(record, command="python3 x.py --kept", extra=3))
    again = json.loads(path.read_text())
    assert again["command"] == "python3 x.py --kept" and again["date"] == record["date"] and again["extra"] == 3


def test_a_record_that_cannot_be_written_leaves_the_previous_file(tmp_path):
    path = tmp_path / "r.json"
    results_file.write(str(path), figures=[1])
    before = path.read_bytes()
    with pytest.raises(TypeError):
        results_file.write(str(path), figures=object())  # not JSON: refused before the file is touched
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["r.json"]
