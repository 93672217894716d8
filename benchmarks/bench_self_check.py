"""Cost of the CUDA plugins' self-check (custom_ops.use_plugin), measured on CPU with stand-in plugins.

The stand-ins (torch_utils/ops/plugin_contract.py) compute what the kernels compute, in PyTorch, so this times
the check's CPU-side work: building the small fixed inputs, the plugin and reference autograd graphs to second
order, and the comparison (one host sync). On a GPU the kernels themselves are microseconds each at these sizes
(about 60 launches per op); tools/gpu_check.py reports the real first-use cost there.

    python benchmarks/bench_self_check.py            # median [min, max] over --reps, per op
    python benchmarks/bench_self_check.py --reps 20 --threads 1

Also printed: the per-call cost of the verdict lookup that every later op call pays.
"""

from __future__ import annotations

import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import click  # noqa: E402
import torch  # noqa: E402

from dnnlib.cli import verbatim  # noqa: E402
from torch_utils import custom_ops  # noqa: E402
from torch_utils.ops import bias_act, plugin_contract, upfirdn2d  # noqa: E402


@click.command(help=verbatim(__doc__))
@click.option("--reps", type=click.IntRange(min=1), default=10, show_default=True)
@click.option("--threads", type=click.IntRange(min=1), default=1, show_default=True)
def main(reps: int, threads: int) -> None:
    torch.set_num_threads(threads)
    bias_act._plugin = lambda: plugin_contract.bias_act_plugin
    upfirdn2d._plugin = lambda: plugin_contract.upfirdn2d_plugin
    custom_ops.plugin_device_types.add("cpu")
    device = torch.device("cpu")
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), load average {os.getloadavg()[0]:.1f}; "
        f"stand-in plugins on CPU"
    )
    for name, op, cases in (
        ("bias_act", bias_act, bias_act.SELF_CHECK_CASES),
        ("upfirdn2d", upfirdn2d, upfirdn2d.SELF_CHECK_CASES),
    ):
        for dtype in (torch.float32, torch.float64):
            op.self_check(device, dtype)  # warm-up (first-call allocations, dispatcher caches)
            wall, cpu = [], []
            for _ in range(reps):
                start, start_cpu = time.perf_counter(), time.thread_time()
                op.self_check(device, dtype)
                wall.append((time.perf_counter() - start) * 1e3)
                cpu.append((time.thread_time() - start_cpu) * 1e3)
            print(
                f"{name:9s} {str(dtype):14s} {len(cases)} cases: wall {statistics.median(wall):6.1f} ms "
                f"[{min(wall):.1f}, {max(wall):.1f}], thread CPU {statistics.median(cpu):6.1f} ms "
                f"[{min(cpu):.1f}, {max(cpu):.1f}]"
            )
    x = torch.randn(2, 4, 8, 8)
    custom_ops.reset_self_checks()
    start = time.perf_counter()
    custom_ops.use_plugin("bias_act", x, bias_act._plugin, bias_act.self_check)
    first = (time.perf_counter() - start) * 1e3
    n = 100000
    start = time.perf_counter()
    for _ in range(n):
        custom_ops.use_plugin("bias_act", x, bias_act._plugin, bias_act.self_check)
    later = (time.perf_counter() - start) / n * 1e6
    print(f"use_plugin: first call {first:.1f} ms (runs the check), later calls {later:.2f} us each (lookup)")


if __name__ == "__main__":
    main()
