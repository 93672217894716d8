"""Experiment outputs are written atomically: the final file appears whole and no temporary file is left."""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from experiments.outputs import save_figure_atomic, write_text_atomic  # noqa: E402


def test_text_is_replaced_whole_and_no_temporary_remains(tmp_path):
    target = tmp_path / "new" / "table.md"
    write_text_atomic(target, "first\n")
    write_text_atomic(target, "second\n")
    assert target.read_text() == "second\n"
    assert sorted(p.name for p in target.parent.iterdir()) == ["table.md"]


def test_figure_format_follows_the_suffix(tmp_path):
    figure = plt.figure()
    save_figure_atomic(figure, tmp_path / "plot.png")
    plt.close(figure)
    assert (tmp_path / "plot.png").read_bytes()[:4] == b"\x89PNG"
    assert [p.name for p in tmp_path.iterdir()] == ["plot.png"]
