"""Where experiment outputs go by default, and atomic writes for them: a reader never sees a half-written table or
figure."""

from __future__ import annotations

import os
import pathlib
from collections.abc import Callable
from typing import TypeVar

import click

from rlo.files import atomic_write

PathLike = str | os.PathLike

# The experiments' default --out: relative, so it resolves against the current directory when a CLI writes (never
# against where the package is installed). The committed figures are written with --out=docs/figures.
DEFAULT_OUT = pathlib.Path("rlo-results")
F = TypeVar("F", bound=Callable)


def out_option(command: F) -> F:
    """The experiments' ``--out DIR`` flag (a pathlib.Path), default :data:`DEFAULT_OUT`."""
    return click.option(
        "--out",
        type=click.Path(file_okay=False, path_type=pathlib.Path),
        default=DEFAULT_OUT,
        show_default=True,
        metavar="DIR",
        help="output folder; a relative one is under the current directory",
    )(command)


def write_text_atomic(path: PathLike, text: str) -> pathlib.Path:
    """Write ``text`` to ``path`` all-or-nothing (rlo.files.atomic_write)."""
    path = pathlib.Path(path)
    atomic_write(path, lambda f: f.write(text.encode()))
    return path


def save_figure_atomic(figure, path: PathLike, dpi: int = 120) -> pathlib.Path:
    """``figure.savefig`` all-or-nothing; the format follows the suffix."""
    path = pathlib.Path(path)
    atomic_write(
        path, lambda f: figure.savefig(f, format=path.suffix.lstrip(".") or "png", dpi=dpi, bbox_inches="tight")
    )
    return path
