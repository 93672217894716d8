"""Click parameter types shared by the command-line scripts: numbers are checked where they are parsed.

A NaN learning rate or an infinite --kimg is refused by click before anything runs, with the flag named, so no
script needs its own `if not math.isfinite(...)` check.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Sequence
from typing import Any

import click

SEED_RANGE = click.IntRange(0, 2**32 - 1)  # numpy's RandomState and torch both take seeds in [0, 2^32)


class FiniteFloat(click.ParamType):
    """A finite float within optional bounds; `min_open` / `max_open` exclude the bound itself."""

    name = "float"

    def __init__(
        self, min: float | None = None, max: float | None = None, min_open: bool = False, max_open: bool = False
    ):
        self.min, self.max, self.min_open, self.max_open = min, max, min_open, max_open

    def _bounds_text(self) -> str:
        parts = []
        if self.min is not None:
            parts.append(f"{'>' if self.min_open else '>='} {self.min:g}")
        if self.max is not None:
            parts.append(f"{'<' if self.max_open else '<='} {self.max:g}")
        return " and ".join(parts)

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        if isinstance(value, float) and math.isfinite(value) and self._in_bounds(value):
            return value
        try:
            number = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number", param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        if not self._in_bounds(number):
            self.fail(f"{number:g} is out of range: it must be {self._bounds_text()}", param, ctx)
        return number

    def _in_bounds(self, number: float) -> bool:
        if self.min is not None and (number < self.min or (self.min_open and number == self.min)):
            return False
        if self.max is not None and (number > self.max or (self.max_open and number == self.max)):
            return False
        return True

    def __repr__(self) -> str:
        return f"FiniteFloat({self._bounds_text() or 'any'})"


POSITIVE = FiniteFloat(min=0, min_open=True)
NON_NEGATIVE = FiniteFloat(min=0)
PROBABILITY = FiniteFloat(min=0, max=1)


class CommaList(click.ParamType):
    """Comma-separated values, `--res=32,256`: each item converted by `item` (a click type or a Python type) and,
    with `choices`, checked against them. Blank items are dropped; at least one must remain. Gives a list."""

    name = "list"

    def __init__(self, item: Any = str, choices: Sequence[str] | None = None):
        self.item = click.types.convert_type(item)
        self.choices = tuple(choices) if choices is not None else None

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> list:
        if isinstance(value, (list, tuple)):
            return list(value)
        parts = [part.strip() for part in str(value).split(",") if part.strip()]
        if not parts:
            self.fail(f"{value!r}: expected one or more comma-separated values", param, ctx)
        if self.choices is not None:
            unknown = [part for part in parts if part not in self.choices]
            if unknown:
                self.fail(f"{', '.join(unknown)} not in {', '.join(self.choices)}", param, ctx)
        return [self.item.convert(part, param, ctx) for part in parts]


class Parsed(click.ParamType):
    """A value read by `parse`, a function that raises ValueError naming what is wrong (shown as the flag's error).
    Values already parsed (defaults given as such) pass through."""

    def __init__(self, parse: Callable[[str], Any], name: str):
        self.parse, self.name = parse, name

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if not isinstance(value, str):
            return value
        try:
            return self.parse(value)
        except ValueError as err:
            self.fail(str(err), param, ctx)


def verbatim(doc: str) -> str:
    """`doc` as a click help text that keeps its line breaks (a script's docstring with its usage lines): click
    rewraps every paragraph that does not start with a `\\b` line."""
    paragraphs = inspect.cleandoc(doc).split("\n\n")
    return "\n\n".join("\b\n" + paragraph for paragraph in paragraphs)
