"""metric_main.report_metric: the result line is printed even when the run folder refuses the record."""

import json

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
    assert captured.err.startswith("warning: could not append to ") and captured.err.count("\n") == 1
