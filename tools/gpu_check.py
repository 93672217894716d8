"""One-shot device check: build + CUDA tests, op and network timings, a short real training run, 2-GPU NCCL.

On a machine with a CUDA GPU and this checkout, in under 8 minutes (default budgets, which add up to 450 s):
  1. build   builds both plugins in a fresh process (RLO_CUDA_OPS=strict: a failed self-check is an error),
             records each self-check (op, dtype, seconds), then runs `pytest -m cuda` (also strict);
  2. ops     bias_act and upfirdn2d forward+backward, plugin vs reference, float32 and float16;
  3. nets    G and D forward+backward at 64x64 and 256x256, fp32 and with the fp16 layers (num_fp16_res=4);
  4. train   train.py as a subprocess on a generated 64px folder: --cfg=auto --batch=64 --loss=rlo --k=2
             --metrics=none for a few ticks, reporting s/kimg (median over the ticks after tick 0);
  5. nccl    the same with --gpus=2 when two GPUs are present (skipped otherwise).
Each step has its own time budget; a failure, a timeout or an exhausted budget is a row of the table, never
the end of the run. It prints one table and writes it (with the configuration) as JSON.

    python tools/gpu_check.py --json=gpu_check.json
    python tools/gpu_check.py --device=cpu --quick     # dry run of every step on CPU, < 1 minute
    python tools/gpu_check.py --steps=ops,nets         # a subset (comma-separated, run in this order)

Statuses: ok, FAILED (with the error), timeout (the step's budget ran out inside a subprocess), budget (not
started: its or the total budget was spent), skipped (does not apply here, e.g. one GPU).
"""

from __future__ import annotations

import dataclasses
import glob
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import click  # noqa: E402
import torch  # noqa: E402

from dnnlib.cli import CommaList, verbatim  # noqa: E402

STEPS = ("build", "ops", "nets", "train", "nccl")
# Seconds per step on a GPU machine (the build compiles two plugins with nvcc; train.py pays its own start-up).
BUDGETS = dict(build=180, ops=30, nets=60, train=100, nccl=80)
QUICK_BUDGETS = dict(build=20, ops=5, nets=8, train=25, nccl=2)  # 60 s: the CPU dry run


@dataclasses.dataclass
class Row:
    """One line of the table: which step, what was measured, how it went, the figure, and its time."""

    step: str
    item: str
    status: str
    value: str = ""
    seconds: float = 0.0
    data: dict = dataclasses.field(default_factory=dict)


class Budget:
    """Wall-clock allowance of one step, capped by what is left of the total."""

    def __init__(self, seconds: float):
        self.seconds = max(seconds, 0.0)
        self.start = time.perf_counter()

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def left(self) -> float:
        return self.seconds - self.elapsed()

    def expired(self) -> bool:
        return self.left() <= 0


@dataclasses.dataclass
class Context:
    device: torch.device
    quick: bool
    workdir: Path
    python: str = sys.executable


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_ms(fn: Callable[[], Any], device: torch.device, reps: int, budget: Budget) -> list[float]:
    """Milliseconds per call after one warm-up; stops early (at least one rep) when the budget runs out."""
    fn()
    sync(device)
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        sync(device)
        times.append((time.perf_counter() - start) * 1e3)
        if budget.expired():
            break
    return times


def spread(times: list[float], unit: str) -> str:
    return f"{statistics.median(times):.3g} {unit} [{min(times):.3g}, {max(times):.3g}] n={len(times)}"


def run_subprocess(
    cmd: list[str], budget: Budget, env: dict | None = None, cwd: Path = REPO
) -> tuple[subprocess.CompletedProcess | None, str]:
    """(completed process or None on timeout, combined output tail)."""
    full_env = dict(os.environ, **(env or {}))
    if torch.get_num_threads() == 1:  # the CPU dry run: one thread, as in this process
        full_env.setdefault("OMP_NUM_THREADS", "1")
    try:
        proc = subprocess.run(
            cmd, cwd=str(cwd), env=full_env, capture_output=True, text=True, timeout=max(budget.left(), 1.0)
        )
    except subprocess.TimeoutExpired as err:
        out = (err.stdout or b"") if isinstance(err.stdout, bytes) else (err.stdout or "")
        if isinstance(out, bytes):
            out = out.decode(errors="replace")
        return None, out[-2000:]
    return proc, (proc.stdout + proc.stderr)[-4000:]


def last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1][-300:] if lines else ""


# ----------------------------------------------------------------------------------------------------
# Step 1: build the plugins, self-check them, run the CUDA tests.

BUILD_SCRIPT = r"""
import json, sys, time, torch
sys.path.insert(0, sys.argv[1])
from torch_utils import custom_ops
from torch_utils.ops import bias_act, upfirdn2d
out = {}
for name, op in (("bias_act", bias_act), ("upfirdn2d", upfirdn2d)):
    start = time.perf_counter()
    try:
        ok = op._plugin() is not None
        out[name] = dict(built=ok, seconds=time.perf_counter() - start, error="" if ok else "see warning")
    except Exception as err:
        out[name] = dict(built=False, seconds=time.perf_counter() - start, error=f"{type(err).__name__}: {err}")
errors = []
for dtype in (torch.float32, torch.float16):
    x = torch.randn(2, 4, 8, 8, device="cuda", dtype=dtype)
    bias = torch.zeros(4, device="cuda", dtype=dtype)
    kernel = upfirdn2d.setup_filter([1, 3, 3, 1], device="cuda")
    for name, call in (("bias_act", lambda: bias_act.bias_act(x, bias, act="lrelu")),
                       ("upfirdn2d", lambda: upfirdn2d.upsample2d(x, kernel))):
        try:
            call()
        except Exception as err:
            errors.append(dict(op=name, dtype=str(dtype).replace("torch.", ""), passed=False,
                               error=f"{type(err).__name__}: {err}"[-500:], seconds=0.0))
checks = [dict(op=r.op, dtype=r.dtype, passed=r.passed, error=r.error, seconds=r.seconds)
          for r in custom_ops.self_check_results()]
checks += [e for e in errors if not any((c["op"], c["dtype"]) == (e["op"], e["dtype"]) for c in checks)]
print("GPU_CHECK_JSON " + json.dumps(dict(builds=out, checks=checks)))
"""


def parse_pytest_summary(text: str) -> dict[str, int]:
    """Counts from pytest's closing line, e.g. '80 passed, 2 skipped, 1 failed in 12.3s'."""
    counts: dict[str, int] = {}
    for line in reversed(text.strip().splitlines()):
        found = re.findall(r"(\d+) (passed|failed|skipped|errors?|deselected|xfailed|xpassed)", line)
        if found:
            for number, word in found:
                counts["error" if word.startswith("error") else word] = int(number)
            break
    return counts


def step_build(ctx: Context, budget: Budget) -> list[Row]:
    rows = []
    if ctx.device.type != "cuda":
        rows.append(Row("build", "plugins + self-check", "skipped", "no CUDA device: the ops use the reference"))
    else:
        start = time.perf_counter()
        proc, out = run_subprocess([ctx.python, "-c", BUILD_SCRIPT, str(REPO)], budget, env={"RLO_CUDA_OPS": "strict"})
        if proc is None:
            rows.append(Row("build", "plugins + self-check", "timeout", last_line(out), time.perf_counter() - start))
            return rows
        marker = [line for line in proc.stdout.splitlines() if line.startswith("GPU_CHECK_JSON ")]
        if proc.returncode != 0 or not marker:
            rows.append(Row("build", "plugins + self-check", "FAILED", last_line(out), time.perf_counter() - start))
        else:
            report = json.loads(marker[-1][len("GPU_CHECK_JSON ") :])
            for name, info in report["builds"].items():
                rows.append(
                    Row(
                        "build",
                        f"build {name}",
                        "ok" if info["built"] else "FAILED",
                        "built (or reused from the cache)" if info["built"] else info["error"],
                        info["seconds"],
                        info,
                    )
                )
            for check in report["checks"]:
                rows.append(
                    Row(
                        "build",
                        f"self-check {check['op']} {check['dtype'].replace('torch.', '')}",
                        "ok" if check["passed"] else "FAILED",
                        f"{check['seconds'] * 1e3:.1f} ms" if check["passed"] else check["error"],
                        check["seconds"],
                        check,
                    )
                )
    start = time.perf_counter()
    cmd = [ctx.python, "-m", "pytest", "-m", "cuda", "-q", "-p", "no:cacheprovider"]
    if ctx.quick:
        cmd.append("tests/test_ops_plugin.py")
    proc, out = run_subprocess(cmd, budget, env={"RLO_CUDA_OPS": "strict"})
    seconds = time.perf_counter() - start
    if proc is None:
        rows.append(Row("build", "pytest -m cuda", "timeout", last_line(out), seconds))
    else:
        counts = parse_pytest_summary(out)
        ok = proc.returncode == 0 and not counts.get("failed") and not counts.get("error")
        rows.append(
            Row(
                "build",
                "pytest -m cuda" + (" (test_ops_plugin.py)" if ctx.quick else ""),
                "ok" if ok else "FAILED",
                ", ".join(f"{v} {k}" for k, v in counts.items()) or last_line(out),
                seconds,
                dict(counts=counts, returncode=proc.returncode),
            )
        )
    return rows


# ----------------------------------------------------------------------------------------------------
# Step 2: each plugin op vs its reference.


def step_ops(ctx: Context, budget: Budget) -> list[Row]:
    from torch_utils.ops import bias_act, upfirdn2d

    device = ctx.device
    shape = [2, 16, 16, 16] if ctx.quick else [32, 256, 64, 64]
    reps = 2 if ctx.quick else 10
    f = upfirdn2d.setup_filter([1, 3, 3, 1], device=device)
    dtypes = [torch.float32] + ([torch.float16] if device.type == "cuda" else [])
    impls = ["cuda", "ref"] if device.type == "cuda" else ["ref"]
    cases = {
        "bias_act lrelu": lambda x, b, impl: bias_act.bias_act(x, b, act="lrelu", impl=impl),
        "upsample2d": lambda x, b, impl: upfirdn2d.upsample2d(x, f, impl=impl),
        "downsample2d": lambda x, b, impl: upfirdn2d.downsample2d(x, f, impl=impl),
    }
    rows = []
    for dtype in dtypes:
        x = torch.randn(shape, device=device, dtype=dtype, requires_grad=True)
        b = torch.randn(shape[1], device=device, dtype=dtype, requires_grad=True)
        for name, op in cases.items():
            item = f"{name} {str(dtype).replace('torch.', '')} {'x'.join(map(str, shape))} fwd+bwd"
            if budget.expired():
                rows.append(Row("ops", item, "budget"))
                continue
            start = time.perf_counter()
            try:
                results = {}
                for impl in impls:

                    def run() -> None:
                        y = op(x, b, impl)
                        y.backward(torch.ones_like(y))

                    results[impl] = time_ms(run, device, reps, budget)
                if "cuda" in results:
                    ratio = statistics.median(results["ref"]) / statistics.median(results["cuda"])
                    value = (
                        f"plugin {statistics.median(results['cuda']):.3g} ms, ref "
                        f"{statistics.median(results['ref']):.3g} ms ({ratio:.2f}x)"
                    )
                else:
                    value = f"ref {spread(results['ref'], 'ms')} (no plugin on {device.type})"
                rows.append(
                    Row(
                        "ops",
                        item,
                        "ok",
                        value,
                        time.perf_counter() - start,
                        {k: spread(v, "ms") for k, v in results.items()},
                    )
                )
            except Exception as err:
                rows.append(
                    Row("ops", item, "FAILED", f"{type(err).__name__}: {err}"[-300:], time.perf_counter() - start)
                )
    return rows


# ----------------------------------------------------------------------------------------------------
# Step 3: networks.


def network_kwargs(resolution: int, fp16: bool, quick: bool) -> tuple[dict, dict]:
    from training import options

    spec = options.auto_spec(resolution, gpus=1, cuda=True)
    if quick:  # same structure, a sliver of the channels
        spec = dataclasses.replace(spec, cbase=512, cmax=16, zdim=32)
    return options.network_kwargs(spec, resolution=resolution, channels=3, c_dim=0, fp32=not fp16)


def step_nets(ctx: Context, budget: Budget) -> list[Row]:
    from training.networks import Discriminator, Generator

    device = ctx.device
    rows = []
    reps = 1 if ctx.quick else 5
    for resolution in (64, 256):
        batch = 2 if ctx.quick else (64 if resolution == 64 else 32)
        for fp16 in (False, True):
            G_kwargs, D_kwargs = network_kwargs(resolution, fp16, ctx.quick)
            label = f"{resolution}px {'fp16 layers' if fp16 else 'fp32'} batch {batch}"
            for net in ("G", "D"):
                item = f"{net} {label} fwd+bwd"
                if budget.expired():
                    rows.append(Row("nets", item, "budget"))
                    continue
                start = time.perf_counter()
                try:
                    torch.manual_seed(0)
                    if net == "G":
                        module = Generator(**G_kwargs).train().to(device)
                        z = torch.randn([batch, module.z_dim], device=device)
                        c = torch.zeros([batch, 0], device=device)
                        run = lambda: module(z, c).square().mean().backward()
                    else:
                        module = Discriminator(**D_kwargs).train().to(device)
                        img = torch.randn([batch, 3, resolution, resolution], device=device)
                        c = torch.zeros([batch, 0], device=device)
                        run = lambda: torch.nn.functional.softplus(module(img, c)).mean().backward()
                    times = time_ms(run, device, reps, budget)
                    rows.append(
                        Row("nets", item, "ok", spread(times, "ms"), time.perf_counter() - start, dict(ms=times))
                    )
                    module = run = None  # frees the network before the next one is built
                except Exception as err:
                    rows.append(
                        Row("nets", item, "FAILED", f"{type(err).__name__}: {err}"[-300:], time.perf_counter() - start)
                    )
                if device.type == "cuda":
                    torch.cuda.empty_cache()
    return rows


# ----------------------------------------------------------------------------------------------------
# Steps 4 and 5: train.py as a subprocess.


def make_dataset(folder: Path, count: int, resolution: int = 64) -> Path:
    """`count` random smooth RGB images (PNG) of resolution x resolution in `folder`."""
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.RandomState(0)
    for i in range(count):
        low = rng.rand(8, 8, 3)
        img = np.kron(low, np.ones((resolution // 8, resolution // 8, 1)))
        img = (255 * (0.8 * img + 0.2 * rng.rand(resolution, resolution, 3))).astype(np.uint8)
        Image.fromarray(img).save(folder / f"img{i:05d}.png")
    return folder


def train_command(ctx: Context, data: Path, outdir: Path, gpus: int) -> tuple[list[str], int]:
    """(train.py command line, batch): the paper's 64x64 setting, or a few tiny CPU steps with --quick."""
    if ctx.quick:
        batch, tick, ticks = 8, 0.008, 2
    else:
        batch, tick, ticks = 64, 0.64, 3
    kimg = batch / 1000 + tick * ticks  # tick 0 (one batch, includes warm-up) + the timed ticks
    cmd = [
        ctx.python,
        "train.py",
        f"--outdir={outdir}",
        f"--data={data}",
        "--cfg=auto",
        f"--batch={batch}",
        "--loss=rlo",
        "--k=2",
        "--metrics=none",
        f"--kimg={kimg:.4f}",
        f"--tick={tick}",
        "--snap=1000",
        f"--gpus={gpus}",
    ] + (["--workers=0"] if ctx.quick else [])
    return cmd, batch


def run_training(ctx: Context, budget: Budget, step: str, gpus: int) -> list[Row]:
    start = time.perf_counter()
    data = ctx.workdir / "data64"
    if not data.exists():
        make_dataset(data, 64 if ctx.quick else 512)
    outdir = ctx.workdir / f"runs-{step}"
    cmd, batch = train_command(ctx, data, outdir, gpus)
    item = f"train.py 64px --cfg=auto --batch={batch} --loss=rlo --k=2, {gpus} process(es)"
    proc, out = run_subprocess(cmd, budget, env={"PYTHONUNBUFFERED": "1"})
    seconds = time.perf_counter() - start
    stats_files = glob.glob(str(outdir / "*" / "stats.jsonl"))
    ticks = []
    if stats_files:
        with open(stats_files[0]) as file:
            ticks = [json.loads(line)["Timing/sec_per_kimg"]["mean"] for line in file if line.strip()]
    timed = ticks[1:]
    data_out = dict(command=" ".join(cmd), sec_per_kimg_per_tick=ticks)
    if proc is None:
        status = "timeout"
    elif proc.returncode != 0:
        return [Row(step, item, "FAILED", last_line(out), seconds, data_out)]
    else:
        status = "ok" if timed else "FAILED"
    value = (
        f"{statistics.median(timed):.3g} s/kimg [{min(timed):.3g}, {max(timed):.3g}] over {len(timed)} ticks"
        if timed
        else last_line(out) or "no timed tick"
    )
    return [Row(step, item, status, value, seconds, data_out)]


def step_train(ctx: Context, budget: Budget) -> list[Row]:
    return run_training(ctx, budget, "train", gpus=1)


def step_nccl(ctx: Context, budget: Budget) -> list[Row]:
    count = torch.cuda.device_count() if ctx.device.type == "cuda" else 0
    if count < 2:
        return [Row("nccl", "train.py --gpus=2 (NCCL)", "skipped", f"needs 2 CUDA GPUs, found {count}")]
    return run_training(ctx, budget, "nccl", gpus=2)


STEP_FUNCTIONS: dict[str, Callable[[Context, Budget], list[Row]]] = dict(
    build=step_build, ops=step_ops, nets=step_nets, train=step_train, nccl=step_nccl
)


# ----------------------------------------------------------------------------------------------------
# Driver, table, JSON.


def run_steps(ctx: Context, steps: list[str], budgets: dict[str, float], total: float) -> list[Row]:
    """Every step in order under its budget (capped by the total left); failures become rows."""
    rows: list[Row] = []
    overall = Budget(total)
    for step in steps:
        budget = Budget(min(budgets[step], overall.left()))
        if budget.seconds <= 0:
            rows.append(Row(step, "(step)", "budget", f"total budget of {total:.0f} s spent"))
            continue
        try:
            rows.extend(STEP_FUNCTIONS[step](ctx, budget))
        except Exception as err:
            rows.append(
                Row(
                    step,
                    "(step)",
                    "FAILED",
                    f"{type(err).__name__}: {err}"[-300:],
                    budget.elapsed(),
                    dict(traceback=traceback.format_exc()[-2000:]),
                )
            )
    return rows


def format_table(rows: list[Row]) -> str:
    headers = ("step", "item", "status", "value", "time s")
    cells = [(r.step, r.item, r.status, r.value, f"{r.seconds:.1f}") for r in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) if cells else len(h) for i, h in enumerate(headers)]
    widths[3] = min(widths[3], 90)

    def line(values) -> str:
        return "  ".join(str(v)[: widths[i]].ljust(widths[i]) for i, v in enumerate(values)).rstrip()

    return "\n".join([line(headers), line("-" * w for w in widths)] + [line(c) for c in cells])


def environment(ctx: Context) -> dict[str, Any]:
    env: dict[str, Any] = dict(
        python=platform.python_version(),
        torch=torch.__version__,
        cuda=torch.version.cuda,
        device=str(ctx.device),
        quick=ctx.quick,
        host_cpus=os.cpu_count(),
        load_average=os.getloadavg(),
        rlo_cuda_ops=os.environ.get("RLO_CUDA_OPS", ""),
    )
    if ctx.device.type == "cuda":
        env["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    try:
        env["commit"] = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10
        ).stdout.strip()
    except Exception:
        env["commit"] = "unknown"
    return env


def checked_arguments(
    device: str,
    quick: bool,
    steps: list[str],
    json_path: str,
    total_budget: float | None,
    budget: tuple[str, ...],
    workdir: str | None,
) -> SimpleNamespace:
    """The options with the per-step budgets resolved; a bad value raises click.BadParameter naming it."""
    budgets = dict(QUICK_BUDGETS if quick else BUDGETS)
    for spec in budget:
        step, _, seconds = spec.partition("=")
        if step not in STEPS:
            raise click.BadParameter(
                f"{spec!r}: unknown step {step!r}; steps are {', '.join(STEPS)}", param_hint="--budget"
            )
        try:
            budgets[step] = float(seconds)
        except ValueError:
            raise click.BadParameter(
                f"{spec!r}: {seconds!r} is not a number of seconds", param_hint="--budget"
            ) from None
    if total_budget is None:
        total_budget = sum(budgets[s] for s in steps)
    if device.split(":")[0] not in ("cuda", "cpu"):
        raise click.BadParameter(f"{device!r}: expected cuda or cpu", param_hint="--device")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise click.BadParameter(
            "cuda but torch sees no CUDA device; use --device=cpu --quick for a dry run", param_hint="--device"
        )
    return SimpleNamespace(
        device=device,
        quick=quick,
        steps=steps,
        json=json_path,
        total_budget=total_budget,
        budgets=budgets,
        workdir=workdir,
    )


@click.command(help=verbatim(__doc__))
@click.option("--device", default="cuda", show_default=True, help="cuda, or cpu (a dry run of the machinery)")
@click.option("--quick", is_flag=True, help="tiny sizes and short budgets (the CPU dry run)")
@click.option(
    "--steps",
    type=CommaList(choices=STEPS),
    default=",".join(STEPS),
    show_default=True,
    help="comma-separated steps to run, in order",
)
@click.option(
    "--json", "json_path", default="gpu_check.json", show_default=True, help="where to write the table as JSON"
)
@click.option(
    "--total-budget", type=float, default=None, help="seconds for all steps [default: the sum of the step budgets]"
)
@click.option(
    "--budget",
    multiple=True,
    metavar="STEP=SECONDS",
    help="override one step's budget, e.g. --budget=train=200 (repeatable)",
)
@click.option("--workdir", default=None, help="scratch folder [default: a temporary one]")
def main(**kwargs) -> None:
    run(checked_arguments(**kwargs))


def parse_args(argv: list[str]) -> SimpleNamespace:
    """`main`'s options from a command line, checked as a run checks them (tests); errors raise click.UsageError."""
    with main.make_context("gpu_check.py", list(argv)) as ctx:
        return checked_arguments(**ctx.params)


def run(args: SimpleNamespace) -> None:
    with tempfile.TemporaryDirectory(prefix="gpu_check_") as tmp:
        workdir = Path(args.workdir) if args.workdir else Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        ctx = Context(device=torch.device(args.device), quick=args.quick, workdir=workdir)
        if ctx.device.type == "cpu":
            # A CPU shared with other work: extra OpenMP threads mostly wait for each other.
            torch.set_num_threads(1)
        start = time.perf_counter()
        rows = run_steps(ctx, args.steps, args.budgets, args.total_budget)
        total = time.perf_counter() - start
    table = format_table(rows)
    print(table)
    failed = sum(r.status in ("FAILED", "timeout") for r in rows)
    print(f"\n{len(rows)} rows, {failed} failed or timed out, {total:.0f} s in all (budget {args.total_budget:.0f} s)")
    report = dict(
        environment=environment(ctx),
        budgets=args.budgets,
        total_budget_s=args.total_budget,
        total_s=total,
        rows=[dataclasses.asdict(r) for r in rows],
    )
    Path(args.json).write_text(json.dumps(report, indent=1))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
