"""What each install puts into site-packages: the loss library (`pip install .`) and the application
(`pip install -r requirements.txt`), measured from this environment's installed distributions.

The library: its wheel is built here (no network, no dependencies) and its declared dependencies read from the
wheel's metadata; its own size is the wheel's unpacked files. The application: every distribution that
requirements.txt names, and everything they require in turn (markers evaluated for this interpreter), with the size
of the files each one recorded at install time. Both are also given without torch and its CUDA libraries
(`nvidia-*`, `triton`), which a user of the library already has.

    python3 benchmarks/bench_install.py --json=benchmarks/results/install_sizes.json
"""

from __future__ import annotations

import email.parser
import importlib.metadata as md
import re
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import click

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks import results_file  # noqa: E402
from dnnlib.cli import verbatim  # noqa: E402

TORCH_STACK = re.compile(r"^(torch|nvidia-.*|triton)$")  # what a user of the loss library already has


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(line: str) -> str | None:
    """The distribution a requirements line names (None for comments, blank lines and -r includes)."""
    line = line.split("#", 1)[0].strip()
    if not line or line.startswith("-"):
        return None
    return canonical(re.split(r"[<>=!~;\[ ]", line, maxsplit=1)[0])


def closure(names: list[str]) -> dict[str, md.Distribution]:
    """The named distributions and every one they require, as installed here (markers for this interpreter)."""
    found: dict[str, md.Distribution] = {}
    todo = list(names)
    while todo:
        name = canonical(todo.pop())
        if name in found:
            continue
        try:
            dist = md.distribution(name)
        except md.PackageNotFoundError:
            raise click.ClickException(f"{name} is required but not installed here: install requirements.txt") from None
        found[name] = dist
        for requirement in dist.requires or []:
            spec, _, marker = requirement.partition(";")
            if "extra ==" in marker:
                continue  # an optional extra of that distribution, not installed by the requirement
            if marker.strip() and not _marker_holds(marker):
                continue
            todo.append(re.split(r"[<>=!~\[ (]", spec.strip(), maxsplit=1)[0])
    return found


def _marker_holds(marker: str) -> bool:
    """Environment markers of the kinds torch and friends use (platform, python_version), for this interpreter."""
    env = dict(
        sys_platform=sys.platform,
        platform_system={"linux": "Linux", "darwin": "Darwin", "win32": "Windows"}.get(sys.platform, sys.platform),
        platform_machine=__import__("platform").machine(),
        python_version=".".join(map(str, sys.version_info[:2])),
        implementation_name=sys.implementation.name,
        platform_python_implementation=__import__("platform").python_implementation(),
        os_name=__import__("os").name,
    )
    expr = marker
    for key, value in env.items():
        expr = expr.replace(key, repr(value))
    expr = re.sub(r"'(\d+(?:\.\d+)*)'\s*(<=|>=|<|>)\s*'(\d+(?:\.\d+)*)'", _compare_versions, expr)
    try:
        return bool(eval(expr, {"__builtins__": {}}))  # noqa: S307 -- our own substitution of literal values
    except Exception:
        return True  # unknown marker: count the distribution (an overestimate, never an underestimate)


def _compare_versions(match: re.Match) -> str:
    a, op, b = match.group(1), match.group(2), match.group(3)
    va, vb = tuple(map(int, a.split("."))), tuple(map(int, b.split(".")))
    return str({"<": va < vb, "<=": va <= vb, ">": va > vb, ">=": va >= vb}[op])


def installed_bytes(dist: md.Distribution) -> int:
    return sum(f.size or 0 for f in dist.files or [])


def library_wheel() -> dict:
    """Build the distribution's wheel here (no network, no dependencies): its files, size and declared needs."""
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "--no-index"]
            + ["--wheel-dir", tmp, str(REPO)],
            check=True,
        )
        (wheel,) = Path(tmp).glob("*.whl")
        with zipfile.ZipFile(wheel) as zf:
            infos = zf.infolist()
            (metadata,) = [i for i in infos if i.filename.endswith(".dist-info/METADATA")]
            meta = email.parser.Parser().parsestr(zf.read(metadata).decode())
            packages = sorted({i.filename.split("/")[0] for i in infos if ".dist-info/" not in i.filename})
            return dict(
                wheel=wheel.name,
                wheel_bytes=wheel.stat().st_size,
                unpacked_bytes=sum(i.file_size for i in infos),
                top_level=packages,
                requires_dist=meta.get_all("Requires-Dist") or [],
            )


def summary(dists: dict[str, md.Distribution]) -> dict:
    sizes = {name: installed_bytes(d) for name, d in sorted(dists.items())}
    rest = {n: s for n, s in sizes.items() if not TORCH_STACK.match(n)}
    return dict(
        distributions=len(sizes),
        bytes=sum(sizes.values()),
        without_torch_stack=dict(distributions=len(rest), bytes=sum(rest.values())),
        largest=dict(sorted(sizes.items(), key=lambda kv: -kv[1])[:8]),
    )


@click.command(help=verbatim(__doc__))
@click.option("--json", "json_path", default=None, help="also write the figures to this file")
def main(json_path: str | None) -> None:
    library = library_wheel()
    needs = [canonical(re.split(r"[<>=!~;\[ ]", r, maxsplit=1)[0]) for r in library["requires_dist"]]
    library["with_dependencies"] = summary(closure(needs))
    app_names = [n for line in (REPO / "requirements.txt").read_text().splitlines() if (n := requirement_name(line))]
    app = dict(requirements=app_names, **summary(closure(app_names)))
    gb, deps = 1e9, library["with_dependencies"]
    print(
        f"loss library: {library['wheel']}, {library['unpacked_bytes'] / 1e3:.0f} kB of "
        f"{', '.join(library['top_level'])}; requires {library['requires_dist']}; with them {deps['distributions']} "
        f"distributions, {deps['bytes'] / gb:.2f} GB ({deps['without_torch_stack']['bytes'] / 1e6:.1f} MB besides "
        "torch and its CUDA libraries)"
    )
    print(
        f"application: {app['distributions']} distributions, {app['bytes'] / gb:.2f} GB "
        f"({app['without_torch_stack']['bytes'] / 1e6:.0f} MB besides torch and its CUDA libraries)"
    )
    if json_path:
        results_file.write(
            json_path,
            python=".".join(map(str, sys.version_info[:3])),
            library=library,
            application=app,
        )


if __name__ == "__main__":
    main()
