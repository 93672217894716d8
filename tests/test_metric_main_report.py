"""metric_main.report_metric: the result line is printed even when the run folder refuses the record, and the
record is appended whole or not at all."""

import errno
import json
import os

import pytest

from dnnlib import files
from metrics import metric_main


def result(value=0.5):
    return dict(results=dict(cls2k_confident=value), metric="cls2k", total_time=1.0, total_time_str="1s", num_gpus=1)


def test_the_line_is_appended_beside_the_snapshot(tmp_path, capsys):
    line = metric_main.report_metric(result(), str(tmp_path), str(tmp_path / "network-snapshot-000004.pt"))
    assert json.loads(line)["snapshot_pkl"] == "network-snapshot-000004.pt"
    assert (tmp_path / "metric-cls2k.jsonl").read_text() == line + "\n"
    assert capsys.readouterr().out.strip() == line


def test_a_folder_that_refuses_the_record_gets_one_warning_not_a_traceback(tmp_path, capsys):
    (tmp_path / "metric-cls2k.jsonl").mkdir()  # appending to it fails with an OSError, as a read-only folder would
    line = metric_main.report_metric(result(0.25), str(tmp_path), str(tmp_path / "network-snapshot-000004.pt"))
    captured = capsys.readouterr()
    assert captured.out.strip() == line
    assert captured.err.startswith("warning: could not write ") and captured.err.count("\n") == 1
    assert "metric-cls2k.jsonl" in captured.err and "the result is the line above" in captured.err


class CutShort:
    """A file whose write puts out the first half of the data, then fails (raise) or reports the short count."""

    def __init__(self, file, raise_error):
        self.file, self.raise_error = file, raise_error

    def __getattr__(self, name):
        return getattr(self.file, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.file.close()

    def write(self, data):
        written = self.file.write(data[: len(data) // 2])
        if self.raise_error:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return written


@pytest.mark.parametrize("raise_error", [True, False], ids=["failed write", "short write"])
def test_a_write_cut_short_leaves_the_log_as_it_was(tmp_path, monkeypatch, raise_error):
    log, new = tmp_path / "metric-cls2k.jsonl", tmp_path / "metric-new.jsonl"
    log.write_text('{"a": 1}\n')
    real_fdopen = os.fdopen
    monkeypatch.setattr(os, "fdopen", lambda *args, **kwargs: CutShort(real_fdopen(*args, **kwargs), raise_error))
    for path in (log, new):
        with pytest.raises(OSError) as info:
            files.append_line(path, '{"b": 2}')
        assert info.value.errno == errno.ENOSPC
    assert log.read_text() == '{"a": 1}\n'
    assert not new.exists()
    monkeypatch.undo()
    files.append_line(log, '{"b": 2}')
    assert log.read_text() == '{"a": 1}\n{"b": 2}\n'
