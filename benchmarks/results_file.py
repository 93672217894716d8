"""How a benchmark writes its results file, written once: first the command that reproduces it, with the
environment variables that pick CPU kernels (so an AVX2 run's command says so), then the date, then the
benchmark's own fields. Written atomically, so an interrupted run leaves the previous file whole.
"""

from __future__ import annotations

import datetime
import json
import os
import shlex
import sys

from dnnlib.files import atomic_write

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KERNEL_ENV = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS")


def command(argv: list[str] | None = None) -> str:
    """This process's command line as typed from the repository root, kernel-picking variables first."""
    argv = sys.argv if argv is None else argv
    env = [f"{name}={os.environ[name]}" for name in KERNEL_ENV if os.environ.get(name)]
    return shlex.join([*env, "python3", os.path.relpath(os.path.abspath(argv[0]), ROOT), *argv[1:]])


def write(path: str, **fields) -> None:
    """The results file at path: command and date (unless fields give their own), then fields, as JSON."""
    record = dict(command=command(), date=datetime.datetime.now().isoformat(timespec="seconds"))
    record.update(fields)
    data = (json.dumps(record, indent=1) + "\n").encode()
    atomic_write(path, lambda file: file.write(data))
    print(f"wrote {path}")
