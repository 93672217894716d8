"""training/output_folder.py: a command's files appear all together or not at all."""

import errno
import os
import tempfile

import numpy as np
import pytest

from training.image_grid import save_png
from training.output_folder import OutputError, staged_output

PIXELS = np.full([4, 4, 3], 90, dtype=np.uint8)


def test_files_appear_together_and_staging_is_gone(tmp_path):
    outdir = tmp_path / "new" / "deeper"
    with staged_output(str(outdir)) as place:
        for name in ("a.png", "b.png"):
            save_png(place(name), PIXELS)
        assert not (outdir / "a.png").exists()  # nothing visible before the end
    assert sorted(os.listdir(outdir)) == ["a.png", "b.png"]


def test_subfolders_a_name_placed_twice_and_a_name_never_written(tmp_path):
    """projector.py's outputs: one subfolder per network, projection.jsonl rewritten after each, an optional video
    that may fail on its own."""
    outdir = tmp_path / "proj"
    with staged_output(str(outdir)) as place:
        save_png(place(os.path.join("00-a", "proj.png")), PIXELS)
        place(os.path.join("00-a", "proj.mp4"))  # the video writer gave up: no file
        for text in ("first", "second"):
            with open(place("log.txt"), "w") as file:
                file.write(text)
    assert sorted(os.listdir(outdir)) == ["00-a", "log.txt"]
    assert os.listdir(outdir / "00-a") == ["proj.png"] and (outdir / "log.txt").read_text() == "second"


def test_a_failure_after_subfolders_were_placed_leaves_nothing(tmp_path):
    outdir = tmp_path / "proj"
    with pytest.raises(OutputError, match="no space left on device"):
        with staged_output(str(outdir)) as place:
            save_png(place(os.path.join("00-a", "proj.png")), PIXELS)
            raise OSError(errno.ENOSPC, "No space left on device")
    assert os.listdir(tmp_path) == []


def full_disk_after(count):
    written = []

    def write(path, image):
        if len(written) == count:
            raise OSError(errno.ENOSPC, "No space left on device")
        save_png(path, image)
        written.append(path)

    return write


def test_a_full_disk_removes_the_new_files_and_the_folders_it_made(tmp_path):
    outdir = tmp_path / "made" / "here"
    write = full_disk_after(2)
    with pytest.raises(OutputError, match=r"^no space left on device while writing .*here; nothing was written$"):
        with staged_output(str(outdir)) as place:
            for i in range(4):
                write(place(f"{i}.png"), PIXELS)
    assert not (tmp_path / "made").exists()


def test_a_failure_leaves_an_existing_folder_as_it_was(tmp_path):
    (tmp_path / "0.png").write_bytes(b"older image")
    write = full_disk_after(1)
    with pytest.raises(OutputError):
        with staged_output(str(tmp_path)) as place:
            for i in range(3):
                write(place(f"{i}.png"), PIXELS)
    assert os.listdir(tmp_path) == ["0.png"]
    assert (tmp_path / "0.png").read_bytes() == b"older image"


def test_a_read_only_folder_is_one_line(tmp_path, monkeypatch):
    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(tempfile, "mkdtemp", read_only)
    with pytest.raises(OutputError, match="read-only file system; nothing was written"):
        with staged_output(str(tmp_path / "out")):
            pass
    assert not (tmp_path / "out").exists()


def test_other_errors_pass_through_unchanged(tmp_path):
    with pytest.raises(KeyError):
        with staged_output(str(tmp_path / "out")) as place:
            save_png(place("a.png"), PIXELS)
            raise KeyError("not about writing")
    assert not (tmp_path / "out").exists()
