"""Where experiment outputs go by default, and atomic writes for them: a reader never sees a half-written table or
figure."""
from __future__ import annotations

import os
import pathlib
import uuid
from typing import Callable, TypeVar, Union

import click

PathLike = Union[str, os.PathLike]

# The experiments' default --out: relative, so it resolves against the current directory when a CLI writes (never
# against where the package is installed). The committed figures are written with --out=docs/figures.
DEFAULT_OUT = pathlib.Path("rlo-results")
F = TypeVar("F", bound=Callable)


def out_option(command: F) -> F:
    """The experiments' ``--out DIR`` flag (a pathlib.Path), default :data:`DEFAULT_OUT`."""
    return click.option("--out", type=click.Path(file_okay=False, path_type=pathlib.Path), default=DEFAULT_OUT,
                        show_default=True, metavar="DIR",
                        help="output folder; a relative one is under the current directory")(command)


def _temporary_beside(path: pathlib.Path) -> pathlib.Path:
    """A fresh name in the target's folder (same file system, so the rename is atomic); same suffix for savefig."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.with_name(f".{path.stem}.{uuid.uuid4().hex}{path.suffix}")


def write_text_atomic(path: PathLike, text: str) -> pathlib.Path:
    """Write ``text`` to ``path`` through a temporary file in the same folder and an atomic rename."""
    path = pathlib.Path(path)
    temporary = _temporary_beside(path)
    try:
        temporary.write_text(text)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    return path


def save_figure_atomic(figure, path: PathLike, dpi: int = 120) -> pathlib.Path:
    """``figure.savefig`` to a temporary file beside ``path``, then rename; the format follows the suffix."""
    path = pathlib.Path(path)
    temporary = _temporary_beside(path)
    try:
        figure.savefig(temporary, dpi=dpi, bbox_inches="tight")
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    return path
