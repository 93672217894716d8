"""All-or-nothing output of a command that writes several files into one folder (generate.py, style_mixing.py,
projector.py).

The files are written into a hidden staging folder inside the output folder and renamed into place only after all
of them were written. A full disk or a read-only folder therefore leaves the output folder as it was: no partial set
of images beside older ones, and no empty folder made by the failed command. The failure is one OutputError line
that names the folder and the cause.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator

from dnnlib import files


class OutputError(Exception):
    """A failed write into the output folder, as one line; nothing of this command's output is left behind."""


def _one_line(exc: BaseException, outdir: str) -> OutputError | None:
    cause = files.oserror_in(exc)
    if cause is None:
        return None
    error = files.write_error(cause, outdir, outdir, None, existed=False)
    return OutputError(str(error)) if error is not None else None


@contextlib.contextmanager
def staged_output(outdir: str) -> Iterator[Callable[[str], str]]:
    """Yields `place(name)`: the path to write the output file `name` to (a relative path; its folders are made;
    placing a name again rewrites the same file). On leaving, every placed file that was written appears in `outdir`
    (replacing a file of that name); on an error none does, and the folders this made are removed."""
    outdir = os.path.abspath(outdir)
    created = files.missing_folders(outdir)
    staging = None
    try:
        os.makedirs(outdir, exist_ok=True)
        staging = tempfile.mkdtemp(prefix=".staging-", dir=outdir)
        names: dict[str, None] = {}  # in the order placed, once each

        def place(name: str) -> str:
            names[name] = None
            os.makedirs(os.path.dirname(os.path.join(staging, name)), exist_ok=True)
            return os.path.join(staging, name)

        yield place
        for name in names:
            if not os.path.lexists(os.path.join(staging, name)):
                continue  # placed, then not written (an optional output that failed on its own, e.g. a video)
            created[:0] = files.missing_folders(os.path.dirname(os.path.join(outdir, name)))  # deeper: removed first
            os.makedirs(os.path.dirname(os.path.join(outdir, name)), exist_ok=True)
            os.replace(os.path.join(staging, name), os.path.join(outdir, name))
    except BaseException as exc:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
        files.remove_empty_folders(created)
        error = _one_line(exc, outdir)
        if error is None:
            raise
        raise error from None
    shutil.rmtree(staging, ignore_errors=True)
