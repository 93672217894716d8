"""Our networks and loss vs the official StyleGAN2-ADA code, side by side in one process (CPU, fp32).

Both sides get the same `--cfg=cifar --fp32` weights (the official initialisation, loaded into ours with
strict=True) and the same inputs. Reps are interleaved A/B (order alternating ABBA...), so load from other
processes hits both sides alike; the figure of merit is the per-rep ratio ours/official, printed as median
with min/max, in wall time and in process CPU time (steadier on a shared machine).

    python3 -m pip install -r requirements-extras.txt   # requests and psutil, which the official code imports
    python benchmarks/bench_vs_official.py --official=/path/to/stylegan2-ada-pytorch
    python benchmarks/bench_vs_official.py --official=... --parts=G,iter --reps=5 --json=out.json
    python benchmarks/bench_vs_official.py --official=... --profile --parts=iter   # top ops of each side

Parts: G = G fwd+bwd of mean(img^2); D = D fwd+bwd of softplus(D(img)); iter = one training iteration,
i.e. the phases Gmain + Dmain + Dreg of each side's StyleGAN2Loss (R1 gamma 0.01, no path length, no style
mixing, as --cfg=cifar), each with its module's requires_grad switched on as the training loops do, and each
ended as its own training loop ends a phase: the official one cleans every gradient with its misc.nan_to_num,
ours gathers them for its non-finite check; then an Adam step (lr 0.0025, betas (0.0, 0.99), one optimizer per
network as both loops keep). Not in it: data loading, G_ema, statistics and snapshots. The official code runs
its reference ops (no CUDA on CPU), i.e. exactly what it does on CPU.

Whole ticks (`--parts=tick`): each side's own train.py loop in its own process, `--cfg=cifar --fp32 --aug=noaug
--batch=B` on the same dataset zip (the embedded digits at 32x32, written by our dataset_tool.py), one DataLoader
worker each (the official train.py refuses 0), as many threads as CPUs (what our train.py sets on a CPU), the same
`--host-memory` setting in both (the official process gets glibc's equivalent by environment), pairs interleaved
A/B. The official loop runs unmodified through benchmarks/official_train_cpu.py, which only lets it
start on a CPU. The time is the sum of the `sec/tick` lines after tick 0 (tick 0 is one batch, then warm-up), so it
holds everything a loop does between ticks: data loading, all phases and their optimizer steps, the lazy
regularizers (a tick of 0.256 kimg is 16 batches, one Dreg), G_ema, statistics and the non-finite checks, but
not process start, network construction and snapshots.

Host memory: by default both sides run with freed host memory kept (torch_utils/host_memory.py, what our train.py
does on CPU); --host-memory=system keeps glibc's defaults, under which every 32 MiB activation is page-faulted in
again each time it is made. That costs the official code more than ours (it makes more temporaries), so the ratio
depends on it: measure both.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import re
import subprocess
import sys
import tempfile
import time
import types
from collections.abc import Callable, Iterator
from pathlib import Path

import click
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import rlo  # noqa: E402
from benchmarks import (
    results_file,  # noqa: E402
    timing,  # noqa: E402
)
from dnnlib import util as dnnlib_util  # noqa: E402
from dnnlib.cli import CommaList, verbatim  # noqa: E402
from torch_utils import distributed, host_memory, misc  # noqa: E402
from training import loss as our_loss  # noqa: E402
from training import networks as our_networks  # noqa: E402
from training.options import LossOptions  # noqa: E402

OUR_PACKAGES = ("torch_utils", "dnnlib", "training")


def _owned(name: str) -> bool:
    return any(name == p or name.startswith(p + ".") for p in OUR_PACKAGES)


def load_official(path: str) -> types.SimpleNamespace:
    """Import the official training.networks / training.loss from a checkout, beside our own packages.

    Both code bases use the top-level names torch_utils, dnnlib and training. Ours are imported first and put
    aside; the official ones are imported from `path`, kept by reference (their functions resolve names through
    their own module globals), and then ours are put back, so both run in one process.
    """
    root = Path(path).resolve()
    if not (root / "training" / "networks.py").is_file() or not (root / "torch_utils" / "ops").is_dir():
        raise SystemExit(
            f"--official={path}: not a stylegan2-ada-pytorch checkout "
            f"(expected training/networks.py and torch_utils/ops/ under {root})"
        )
    ours = {name: mod for name, mod in sys.modules.items() if _owned(name)}
    for name in ours:
        del sys.modules[name]
    sys.path.insert(0, str(root))
    try:
        networks = importlib.import_module("training.networks")
        loss = importlib.import_module("training.loss")
        gradfix = importlib.import_module("torch_utils.ops.conv2d_gradfix")
        official = {name: mod for name, mod in sys.modules.items() if _owned(name)}
    finally:
        sys.path.remove(str(root))
        for name in [n for n in sys.modules if _owned(n)]:
            del sys.modules[name]
        sys.modules.update(ours)
    if not str(Path(networks.__file__).resolve()).startswith(str(root)):
        raise SystemExit(f"imported {networks.__file__}, not the official checkout at {root}")
    gradfix.enabled = False  # what it decides by itself on CPU anyway; avoids its once-per-call version warning
    return types.SimpleNamespace(networks=networks, loss=loss, modules=official, root=root)


@contextlib.contextmanager
def official_modules(official: types.SimpleNamespace) -> Iterator[None]:
    """Make the official packages the importable ones for a moment (its persistence checks pickle by name)."""
    ours = {name: mod for name, mod in sys.modules.items() if _owned(name)}
    for name in ours:
        del sys.modules[name]
    sys.modules.update(official.modules)
    try:
        yield
    finally:
        for name in [n for n in sys.modules if _owned(n)]:
            del sys.modules[name]
        sys.modules.update(ours)


def official_commit(root: Path) -> str:
    head = root / ".git"
    try:
        return subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except Exception:  # not a git checkout: say so rather than fail
        return "unknown" if not head.exists() else "unreadable"


def cifar_kwargs(batch: int) -> tuple[dict, dict]:
    """--cfg=cifar --fp32 at 32x32 (official train.py values; mbstd group 32, capped by the batch there)."""
    G = dict(
        z_dim=512,
        c_dim=0,
        w_dim=512,
        img_resolution=32,
        img_channels=3,
        mapping_kwargs=dict(num_layers=2),
        synthesis_kwargs=dict(channel_base=32768, channel_max=512, num_fp16_res=0, conv_clamp=None),
    )
    D = dict(
        c_dim=0,
        img_resolution=32,
        img_channels=3,
        architecture="orig",
        channel_base=32768,
        channel_max=512,
        num_fp16_res=0,
        conv_clamp=None,
        epilogue_kwargs=dict(mbstd_group_size=min(32, batch)),
    )
    return G, D


class Side:
    """One code base: its G and D (same weights as the other side) and its loss object."""

    def __init__(
        self,
        name: str,
        G: torch.nn.Module,
        D: torch.nn.Module,
        make_loss: Callable,
        accumulate: Callable,
        end_phase: Callable[[torch.nn.Module, object], None],
    ):
        self.name, self.G, self.D = name, G, D
        self.loss = make_loss(G, D)
        self._accumulate = accumulate
        self._end_phase = end_phase  # (module, loss): the loop's work between the gradients and the step
        adam = dict(lr=0.0025, betas=(0.0, 0.99), eps=1e-8)
        self.opts = {id(G): torch.optim.Adam(G.parameters(), **adam), id(D): torch.optim.Adam(D.parameters(), **adam)}

    def g_step(self, z: torch.Tensor, c: torch.Tensor) -> None:
        self.G.requires_grad_(True)
        self.G(z, c).square().mean().backward()
        self.G.requires_grad_(False).zero_grad(set_to_none=True)

    def d_step(self, img: torch.Tensor, c: torch.Tensor) -> None:
        self.D.requires_grad_(True)
        torch.nn.functional.softplus(self.D(img, c)).mean().backward()
        self.D.requires_grad_(False).zero_grad(set_to_none=True)

    def iteration(self, real: torch.Tensor, c: torch.Tensor, z: torch.Tensor) -> None:
        for phase, module, gain in (("Gmain", self.G, 1.0), ("Dmain", self.D, 1.0), ("Dreg", self.D, 16.0)):
            opt = self.opts[id(module)]
            opt.zero_grad(set_to_none=True)
            module.requires_grad_(True)
            self._accumulate(self.loss, phase, real, c, z, c, gain)
            module.requires_grad_(False)
            self._end_phase(module, self.loss)
            opt.step()


def official_clean_gradients(official: types.SimpleNamespace, module: torch.nn.Module) -> None:
    """What the official training loop does to every gradient before the step (its misc.nan_to_num)."""
    nan_to_num = official.modules["torch_utils.misc"].nan_to_num
    for param in module.parameters():
        if param.grad is not None:
            nan_to_num(param.grad, nan=0, posinf=1e5, neginf=-1e5, out=param.grad)


def our_check_gradients(module: torch.nn.Module, loss: object) -> None:
    """What our training loop does before the step: gather the gradients (and the loss's non-finite count) into one
    flat tensor (averaged across processes) and check it is finite."""
    flat = distributed.average_gradients(module.parameters(), extra=loss.nonfinite)
    if float(flat[-1]) != 0 or not misc.all_finite(flat[:-1]):
        raise SystemExit(f"non-finite gradients in {type(module).__name__}: the benchmark's inputs are broken")


def build_sides(official: types.SimpleNamespace, batch: int) -> tuple[Side, Side]:
    G_kwargs, D_kwargs = cifar_kwargs(batch)
    torch.manual_seed(0)
    with official_modules(official):
        G_off = official.networks.Generator(**G_kwargs).train().requires_grad_(False)
        D_off = official.networks.Discriminator(**D_kwargs).train().requires_grad_(False)
    G_our = our_networks.Generator(**G_kwargs).train().requires_grad_(False)
    D_our = our_networks.Discriminator(**D_kwargs).train().requires_grad_(False)
    G_our.load_state_dict(G_off.state_dict(), strict=True)
    D_our.load_state_dict(D_off.state_dict(), strict=True)
    device = torch.device("cpu")

    off = Side(
        "official",
        G_off,
        D_off,
        lambda G, D: official.loss.StyleGAN2Loss(
            device, G.mapping, G.synthesis, D, style_mixing_prob=0, r1_gamma=0.01, pl_weight=0
        ),
        lambda loss, phase, real, rc, z, gc, gain: loss.accumulate_gradients(
            phase, real, rc, z, gc, sync=True, gain=gain
        ),
        lambda module, loss: official_clean_gradients(official, module),
    )
    opts = LossOptions(adversarial=rlo.LossConfig("ce"), r1_gamma=0.01, style_mixing_prob=0, pl_weight=0)
    our = Side(
        "ours",
        G_our,
        D_our,
        lambda G, D: our_loss.StyleGAN2Loss(device, G, D, opts),
        lambda loss, phase, real, rc, z, gc, gain: loss.accumulate_gradients(
            phase, real, rc, z, gc, gain=gain, cur_nimg=0
        ),
        our_check_gradients,
    )
    return our, off


def check_same_function(our: Side, off: Side, batch: int) -> dict[str, float]:
    """Max |ours - official| of G's image and D's logits on one batch (noise off): same weights, same function."""
    gen = torch.Generator().manual_seed(1)
    z = torch.randn([batch, 512], generator=gen)
    c = torch.zeros([batch, 0])
    with torch.no_grad():
        img_off = off.G(z, c, noise_mode="const")
        img_our = our.G(z, c, noise_mode="const")
        logits_off = off.D(img_off, c)
        logits_our = our.D(img_off, c)
    return dict(
        G_img=float((img_our - img_off).abs().max()),
        D_logits=float((logits_our - logits_off).abs().max()),
        D_logits_scale=float(logits_off.abs().max()),
    )


def make_inputs(batch: int, seed: int) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return dict(
        z=torch.randn([batch, 512], generator=gen),
        c=torch.zeros([batch, 0]),
        img=torch.randn([batch, 3, 32, 32], generator=gen).clamp(-1, 1),
    )


def run_part(side: Side, part: str, inputs: dict[str, torch.Tensor]) -> None:
    if part == "G":
        side.g_step(inputs["z"], inputs["c"])
    elif part == "D":
        side.d_step(inputs["img"], inputs["c"])
    else:
        side.iteration(inputs["img"], inputs["c"], inputs["z"])


TICK_LINE = re.compile(r"^tick\s+(\d+)\s.*?sec/tick\s+([0-9.]+)", re.MULTILINE)


def make_digits_zip(folder: str) -> str:
    """The embedded digits at 32x32 as a dataset zip both train.pys read."""
    path = os.path.join(folder, "digits32.zip")
    command = [sys.executable, str(REPO / "dataset_tool.py"), "--source=sklearn:digits", f"--dest={path}"]
    subprocess.run(command, check=True, capture_output=True, text=True)
    return path


def tick_commands(official: Path, data: str, outdir: str, batch: int, tick: float, ticks: int) -> dict[str, list]:
    """Each side's training command for `ticks` whole ticks after tick 0, with the same options."""
    kimg = tick * ticks + batch / 1000  # tick 0 ends after one batch; the run then ends with the last whole tick
    ours = [
        str(REPO / "train.py"),
        f"--outdir={outdir}/ours",
        f"--data={data}",
        "--cfg=cifar",
        "--fp32=1",
        "--aug=noaug",
        f"--batch={batch}",
        "--workers=1",
        "--metrics=none",
        f"--kimg={kimg}",
        f"--tick={tick}",
        "--snap=1000000",
    ]
    off = [
        str(REPO / "benchmarks" / "official_train_cpu.py"),
        f"--official={official}",
        f"--outdir={outdir}/official",
        f"--data={data}",
        "--cfg=cifar",
        "--aug=noaug",
        f"--batch={batch}",
        "--workers=1",
        f"--tick={tick}",
        f"--ticks={ticks}",
    ]
    return {"ours": [sys.executable, *ours], "official": [sys.executable, *off]}


def tick_environment(side: str, host_memory_mode: str) -> dict[str, str]:
    """The environment of one side's process: freed host memory kept in both (our train.py's own setting, and the
    same glibc settings by environment for the official one), or glibc's defaults in both."""
    env = {k: v for k, v in os.environ.items() if k not in ("MALLOC_MMAP_MAX_", "MALLOC_TRIM_THRESHOLD_")}
    if host_memory_mode == "system":
        env[host_memory.ENV] = "0"
    elif side == "official":
        env.update(MALLOC_MMAP_MAX_="0", MALLOC_TRIM_THRESHOLD_=str(2**31 - 1))
    return env


def run_ticks(command: list, ticks: int, env: dict[str, str]) -> dict[str, float]:
    """Run one training process; the sum of its sec/tick over ticks 1..ticks, and the process's wall time."""
    start = time.perf_counter()
    proc = subprocess.run(command, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}")
    seconds = {int(n): float(sec) for n, sec in TICK_LINE.findall(proc.stdout)}
    missing = [n for n in range(1, ticks + 1) if n not in seconds]
    if missing:
        raise SystemExit(f"{' '.join(command)}: no tick line for tick(s) {missing}; its output:\n{proc.stdout[-3000:]}")
    return dict(ticks_s=sum(seconds[n] for n in range(1, ticks + 1)), process_s=wall)


def time_ticks(official: Path, batch: int, tick: float, ticks: int, reps: int, host_memory_mode: str) -> dict:
    """`reps` interleaved pairs of whole train.py runs; the per-pair ratio ours/official of the timed ticks."""
    with tempfile.TemporaryDirectory(prefix="bench-ticks-") as folder:
        data = make_digits_zip(folder)
        times: dict[str, list[dict[str, float]]] = {"ours": [], "official": []}
        for rep in range(reps):
            commands = tick_commands(official, data, f"{folder}/rep{rep}", batch, tick, ticks)
            for name in ("ours", "official") if rep % 2 == 0 else ("official", "ours"):
                times[name].append(run_ticks(commands[name], ticks, tick_environment(name, host_memory_mode)))
                print(f"  tick pair {rep + 1}/{reps} {name}: {times[name][-1]['ticks_s']:.1f} s", flush=True)
    ours = [t["ticks_s"] for t in times["ours"]]
    off = [t["ticks_s"] for t in times["official"]]
    return dict(
        tick_kimg=tick,
        ticks=ticks,
        command_ours=" ".join(["train.py", *commands["ours"][2:]]).replace(folder, "TMP"),
        command_official=" ".join(["official_train_cpu.py", *commands["official"][2:]]).replace(folder, "TMP"),
        ours_wall_s=timing.spread(ours),
        official_wall_s=timing.spread(off),
        ratio_wall=timing.spread([a / b for a, b in zip(ours, off)]),
        raw=times,
    )


def timed(fn: Callable[[], None]) -> tuple[float, float]:
    result = timing.measure(fn, 1, warmup=0)
    return result.wall[0], result.cpu[0]


def profile_side(side: Side, part: str, inputs: dict[str, torch.Tensor], top: int) -> list[dict]:
    """Self CPU time per op of one run of `part`, largest first (ms and share of the total)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        run_part(side, part, inputs)
    events = [e for e in prof.key_averages()]
    total = sum(e.self_cpu_time_total for e in events) or 1.0
    events.sort(key=lambda e: e.self_cpu_time_total, reverse=True)
    return [
        dict(op=e.key, calls=e.count, self_ms=e.self_cpu_time_total / 1e3, share=e.self_cpu_time_total / total)
        for e in events[:top]
    ] + [dict(op="TOTAL", calls=0, self_ms=total / 1e3, share=1.0)]


@contextlib.contextmanager
def threads(n: int) -> Iterator[None]:
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


@click.command(help=verbatim(__doc__))
@click.option("--official", required=True, help="path of a NVlabs/stylegan2-ada-pytorch checkout")
@click.option(
    "--parts",
    type=CommaList(choices=["G", "D", "iter", "tick"]),
    default="G,D,iter,tick",
    show_default=True,
    help="comma-separated",
)
@click.option("--tick-kimg", type=float, default=0.256, show_default=True, help="tick length of --parts=tick")
@click.option("--ticks", type=click.IntRange(min=1), default=1, show_default=True, help="timed ticks per run")
@click.option("--batch", type=click.IntRange(min=1), default=16, show_default=True)
@click.option(
    "--reps",
    type=click.IntRange(min=1),
    default=5,
    show_default=True,
    help="timed A/B pairs per part (after one warm-up each)",
)
@click.option(
    "--threads", type=click.IntRange(min=1), default=1, show_default=True, help="torch CPU threads for both sides"
)
@click.option(
    "--host-memory",
    type=click.Choice(["keep", "system"]),
    default="keep",
    show_default=True,
    help="keep freed host memory in the process (as train.py on CPU), or glibc's defaults; applies to both sides",
)
@click.option("--profile", is_flag=True, help="print the top ops of one run per side and part")
@click.option("--top", type=click.IntRange(min=1), default=25, show_default=True, help="ops listed per profile")
@click.option("--json", default=None, help="also write the results here")
def main(**kwargs) -> None:
    args = types.SimpleNamespace(**kwargs)
    kept = host_memory.keep_freed_host_memory() if args.host_memory == "keep" else False
    if args.host_memory == "keep" and not kept:
        print("note: --host-memory=keep had no effect here (not glibc, RLO_KEEP_HOST_MEMORY=0 or MALLOC_* set)")

    official = load_official(args.official)
    commit = official_commit(official.root)
    result: dict = dict(
        config=dict(
            official=str(official.root),
            official_commit=commit,
            code=dnnlib_util.source_version(__file__),
            torch=torch.__version__,
            batch=args.batch,
            threads=args.threads,
            reps=args.reps,
            host_memory="kept" if kept else "system",
            cfg="cifar --fp32 (32x32)",
            load_average_start=os.getloadavg(),
        ),
    )
    with threads(args.threads):
        our, off = build_sides(official, args.batch)
        diff = check_same_function(our, off, args.batch)
        result["max_abs_diff"] = diff
        print(
            f"torch {torch.__version__}, {args.threads} thread(s), batch {args.batch}, cifar fp32 32x32, host memory "
            f"{'kept' if kept else 'glibc defaults'}; official {official.root} @ {commit}"
        )
        print(
            f"same weights, same function: max|img diff| {diff['G_img']:.2e}, "
            f"max|logit diff| {diff['D_logits']:.2e} (logits up to {diff['D_logits_scale']:.2f})"
        )
        inputs = make_inputs(args.batch, seed=2)
        result["parts"] = {}
        for part in [p for p in args.parts if p != "tick"]:
            for side in (our, off):  # warm-up: allocator, oneDNN primitive caches
                run_part(side, part, inputs)
            times: dict[str, dict[str, list[float]]] = {s.name: dict(wall=[], cpu=[]) for s in (our, off)}
            for rep in range(args.reps):
                order = (our, off) if rep % 2 == 0 else (off, our)
                for side in order:
                    wall, cpu = timed(lambda: run_part(side, part, inputs))
                    times[side.name]["wall"].append(wall)
                    times[side.name]["cpu"].append(cpu)
            ratio_wall = [a / b for a, b in zip(times["ours"]["wall"], times["official"]["wall"])]
            ratio_cpu = [a / b for a, b in zip(times["ours"]["cpu"], times["official"]["cpu"])]
            entry = dict(
                ours_wall_s=timing.spread(times["ours"]["wall"]),
                official_wall_s=timing.spread(times["official"]["wall"]),
                ours_cpu_s=timing.spread(times["ours"]["cpu"]),
                official_cpu_s=timing.spread(times["official"]["cpu"]),
                ratio_wall=timing.spread(ratio_wall),
                ratio_cpu=timing.spread(ratio_cpu),
                raw=times,
            )
            result["parts"][part] = entry
            rw, rc = entry["ratio_wall"], entry["ratio_cpu"]
            print(
                f"{part:>4}: ours {entry['ours_wall_s']['median']:7.3f} s, official "
                f"{entry['official_wall_s']['median']:7.3f} s (wall medians) | ours/official wall "
                f"{rw['median']:.3f} [{rw['min']:.3f}, {rw['max']:.3f}], cpu {rc['median']:.3f} "
                f"[{rc['min']:.3f}, {rc['max']:.3f}]  ({args.reps} interleaved pairs, load average "
                f"{os.getloadavg()[0]:.1f})",
                flush=True,
            )
            if args.profile:
                result.setdefault("profiles", {})[part] = {}
                for side in (our, off):
                    rows = profile_side(side, part, inputs, args.top)
                    result["profiles"][part][side.name] = rows
                    print(f"\n  profile {part} / {side.name}: top ops by self CPU time")
                    for row in rows:
                        print(
                            f"    {row['self_ms']:9.1f} ms {100 * row['share']:5.1f}%  {row['calls']:5d}x  {row['op']}"
                        )
                print()
    if "tick" in args.parts:
        print(f"whole ticks: {args.reps} interleaved pairs, {args.ticks} tick(s) of {args.tick_kimg} kimg per run")
        entry = time_ticks(official.root, args.batch, args.tick_kimg, args.ticks, args.reps, args.host_memory)
        result["parts"]["tick"] = entry
        rw = entry["ratio_wall"]
        print(
            f"tick: ours {entry['ours_wall_s']['median']:7.1f} s, official {entry['official_wall_s']['median']:7.1f} s "
            f"(medians) | ours/official {rw['median']:.3f} [{rw['min']:.3f}, {rw['max']:.3f}]  (load average "
            f"{os.getloadavg()[0]:.1f})",
            flush=True,
        )
    result["config"]["load_average_end"] = os.getloadavg()
    if args.json:
        results_file.write(args.json, **result)


if __name__ == "__main__":
    main()
