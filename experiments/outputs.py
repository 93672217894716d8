"""Where experiment outputs go by default, and atomic writes for them: a reader never sees a half-written table or
figure, and a command that fails to write (a full disk, a read-only folder) says so in one line and removes the
files and folders it had created (files it replaced keep their new, complete content)."""

from __future__ import annotations

import contextlib
import functools
import os
import pathlib
from collections.abc import Callable
from typing import TypeVar

import click

from dnnlib.files import FileWriteError, atomic_write, missing_folders, remove_empty_folders

PathLike = str | os.PathLike

# The experiments' default --out: relative, so it resolves against the current directory when a CLI writes (never
# against where the package is installed). The committed figures are written with --out=docs/figures.
DEFAULT_OUT = pathlib.Path("rlo-results")
F = TypeVar("F", bound=Callable)


_created: list[str] | None = None  # while a command runs: the files and folders its writes created, in order


def _note_created(path: pathlib.Path) -> list[str]:
    """What writing `path` will create: the file, if new, and its missing folders (recorded while a command runs)."""
    new = missing_folders(str(path.parent.resolve()))
    if not path.exists():
        new = [str(path.resolve()), *new]
    return new


def _record(created: list[str]) -> None:
    if _created is not None:
        _created.extend(created)


def _remove(created: list[str]) -> None:
    for path in created:
        if os.path.isfile(path):
            with contextlib.suppress(OSError):
                os.remove(path)
    remove_empty_folders(sorted((p for p in created if not os.path.isfile(p)), key=len, reverse=True))


def out_option(command: F) -> F:
    """The experiments' ``--out DIR`` flag (a pathlib.Path), default :data:`DEFAULT_OUT`; a failed write ends the
    command in one line, with the files and folders it created removed."""

    @functools.wraps(command)
    def run(*args, **kwargs):
        global _created
        _created = []
        try:
            return command(*args, **kwargs)
        except FileWriteError as err:
            _remove(list(reversed(_created)))
            raise click.ClickException(f"{err}; this run's other outputs were removed") from None
        finally:
            _created = None

    return click.option(
        "--out",
        type=click.Path(file_okay=False, path_type=pathlib.Path),
        default=DEFAULT_OUT,
        show_default=True,
        metavar="DIR",
        help="output folder; a relative one is under the current directory",
    )(run)


def write_text_atomic(path: PathLike, text: str) -> pathlib.Path:
    """Write ``text`` to ``path`` all-or-nothing (dnnlib.files.atomic_write)."""
    path = pathlib.Path(path)
    created = _note_created(path)
    atomic_write(path, lambda f: f.write(text.encode()))
    _record(created)
    return path


def save_figure_atomic(figure, path: PathLike, dpi: int = 120) -> pathlib.Path:
    """``figure.savefig`` all-or-nothing; the format follows the suffix."""
    path = pathlib.Path(path)
    created = _note_created(path)
    atomic_write(
        path, lambda f: figure.savefig(f, format=path.suffix.lstrip(".") or "png", dpi=dpi, bbox_inches="tight")
    )
    _record(created)
    return path
