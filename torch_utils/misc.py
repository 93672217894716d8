"""Small torch helpers shared by the engine (official StyleGAN2-ADA names)."""

from __future__ import annotations

import contextlib
import re
import warnings
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch

# ----------------------------------------------------------------------------------------------------
# Cached constants.

_constant_cache: dict[tuple, torch.Tensor] = {}


def constant(
    value,
    shape: Sequence[int] | None = None,
    dtype: torch.dtype | None = None,
    device: torch.device | None = None,
    memory_format: torch.memory_format | None = None,
) -> torch.Tensor:
    """A tensor holding `value` (broadcast to `shape`), created once per configuration and reused.

    Avoids re-uploading small constants (filters, masks) every step. Do not modify the result in place.
    """
    value = np.asarray(value)
    if shape is not None:
        shape = tuple(shape)
    if dtype is None:
        dtype = torch.get_default_dtype()
    if device is None:
        device = torch.device("cpu")
    device = torch.device(device)
    if memory_format is None:
        memory_format = torch.contiguous_format
    key = (value.shape, value.dtype, value.tobytes(), shape, dtype, device, memory_format)
    tensor = _constant_cache.get(key)
    if tensor is None:
        tensor = torch.as_tensor(value.copy(), dtype=dtype, device=device)
        if shape is not None:
            tensor, _ = torch.broadcast_tensors(tensor, torch.empty(shape))
        tensor = tensor.contiguous(memory_format=memory_format)
        _constant_cache[key] = tensor
    return tensor


def nan_to_num(
    input: torch.Tensor,
    nan: float = 0.0,
    posinf: float | None = None,
    neginf: float | None = None,
    *,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """torch.nan_to_num (kept under the official name)."""
    return torch.nan_to_num(input, nan=nan, posinf=posinf, neginf=neginf, out=out)


def all_finite(tensor: torch.Tensor) -> bool:
    """Whether every entry is finite. A finite sum proves it (a NaN or an infinity would make the sum non-finite),
    in one pass without a temporary: about 15x cheaper than isfinite().all() on CPU, which the training loop
    pays on every phase's gradients. Only a sum that overflows needs the elementwise check."""
    return bool(torch.isfinite(tensor.sum())) or bool(torch.isfinite(tensor).all())


# ----------------------------------------------------------------------------------------------------
# Tracing and shape checks.


@contextlib.contextmanager
def suppress_tracer_warnings() -> Iterator[None]:
    """Silence torch.jit.TracerWarning inside the block (shape asserts are intentional constants)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=torch.jit.TracerWarning)
        yield


def assert_shape(tensor: torch.Tensor, ref_shape: Sequence[int | None]) -> None:
    """Raise AssertionError unless tensor.shape matches ref_shape; None entries match any size.

    Entries may be tensors (traced sizes); they are compared with torch.equal under the tracer.
    """
    if tensor.ndim != len(ref_shape):
        raise AssertionError(
            f"Wrong number of dimensions: got {tensor.ndim}, expected {len(ref_shape)} "
            f"(shape {tuple(tensor.shape)} vs {list(ref_shape)})"
        )
    for idx, (size, ref_size) in enumerate(zip(tensor.shape, ref_shape)):
        if ref_size is None:
            continue
        if isinstance(ref_size, torch.Tensor):
            with suppress_tracer_warnings():
                if not torch.equal(torch.as_tensor(size), ref_size):
                    raise AssertionError(f"Wrong size for dimension {idx}: expected {ref_size}")
        elif isinstance(size, torch.Tensor):
            with suppress_tracer_warnings():
                if not torch.equal(size, torch.as_tensor(ref_size)):
                    raise AssertionError(f"Wrong size for dimension {idx}: expected {ref_size}")
        elif size != ref_size:
            raise AssertionError(
                f"Wrong size for dimension {idx}: got {size}, expected {ref_size} "
                f"(shape {tuple(tensor.shape)} vs {list(ref_shape)})"
            )


def profiled_function(fn):
    """Decorator that labels fn in torch.autograd.profiler traces."""

    def decorator(*args, **kwargs):
        with torch.autograd.profiler.record_function(fn.__name__):
            return fn(*args, **kwargs)

    decorator.__name__ = fn.__name__
    decorator.__doc__ = fn.__doc__
    return decorator


# ----------------------------------------------------------------------------------------------------
# Sampling.


class InfiniteSampler(torch.utils.data.Sampler):
    """Endless index stream over a dataset, shuffled with a sliding window (official semantics).

    Each rank sees indices idx with idx % num_replicas == rank. window_size is the fraction of the
    dataset over which a swap partner is drawn (1 = full shuffle each pass).
    """

    def __init__(
        self,
        dataset,
        rank: int = 0,
        num_replicas: int = 1,
        shuffle: bool = True,
        seed: int = 0,
        window_size: float = 0.5,
    ):
        if len(dataset) <= 0:
            raise ValueError("InfiniteSampler: dataset is empty")
        if num_replicas <= 0 or not 0 <= rank < num_replicas:
            raise ValueError(
                f"InfiniteSampler: need 0 <= rank < num_replicas, got rank={rank}, num_replicas={num_replicas}"
            )
        if not 0 <= window_size <= 1:
            raise ValueError(f"InfiniteSampler: window_size must be in [0, 1], got {window_size}")
        super().__init__()
        self.dataset = dataset
        self.rank = rank
        self.num_replicas = num_replicas
        self.shuffle = shuffle
        self.seed = seed
        self.window_size = window_size

    def __iter__(self):
        order = np.arange(len(self.dataset))
        rnd = None
        window = 0
        if self.shuffle:
            rnd = np.random.RandomState(self.seed)
            rnd.shuffle(order)
            window = int(np.rint(order.size * self.window_size))
        idx = 0
        while True:
            i = idx % order.size
            if idx % self.num_replicas == self.rank:
                yield int(order[i])
            if window >= 2:
                j = (i - rnd.randint(window)) % order.size
                order[i], order[j] = order[j], order[i]
            idx += 1


# ----------------------------------------------------------------------------------------------------
# Parameters and buffers.


def params_and_buffers(module: torch.nn.Module) -> list[torch.Tensor]:
    return list(module.parameters()) + list(module.buffers())


def named_params_and_buffers(module: torch.nn.Module) -> list[tuple[str, torch.Tensor]]:
    return list(module.named_parameters()) + list(module.named_buffers())


@torch.no_grad()
def copy_params_and_buffers(
    src_module: torch.nn.Module, dst_module: torch.nn.Module, require_all: bool = False
) -> None:
    """Copy every same-named parameter/buffer from src into dst (in place, keeping dst's requires_grad).

    require_all=True raises KeyError naming the first dst tensor that src lacks.
    """
    src_tensors = dict(named_params_and_buffers(src_module))
    for name, tensor in named_params_and_buffers(dst_module):
        if name in src_tensors:
            src = src_tensors[name]
            if src.shape != tensor.shape:
                raise ValueError(
                    f"copy_params_and_buffers: shape mismatch for '{name}': "
                    f"source {tuple(src.shape)} vs destination {tuple(tensor.shape)}"
                )
            tensor.copy_(src.detach())
        elif require_all:
            raise KeyError(f"copy_params_and_buffers: source module has no parameter or buffer '{name}'")


@contextlib.contextmanager
def ddp_sync(module: torch.nn.Module, sync: bool) -> Iterator[None]:
    """Skip DistributedDataParallel gradient all-reduce inside the block when sync is False."""
    if not isinstance(module, torch.nn.Module):
        raise TypeError(f"ddp_sync expects an nn.Module, got {type(module).__name__}")
    if sync or not isinstance(module, torch.nn.parallel.DistributedDataParallel):
        yield
    else:
        with module.no_sync():
            yield


def check_ddp_consistency(module: torch.nn.Module, ignore_regex: str | None = None) -> None:
    """Assert every parameter/buffer is identical on all ranks (no-op without torch.distributed)."""
    if not isinstance(module, torch.nn.Module):
        raise TypeError(f"check_ddp_consistency expects an nn.Module, got {type(module).__name__}")
    distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
    for name, tensor in named_params_and_buffers(module):
        fullname = type(module).__name__ + "." + name
        if ignore_regex is not None and re.fullmatch(ignore_regex, fullname):
            continue
        tensor = tensor.detach()
        if tensor.is_floating_point():
            tensor = torch.nan_to_num(tensor)
        if not distributed:
            continue
        other = tensor.clone()
        torch.distributed.broadcast(tensor=other, src=0)
        if not (tensor == other).all():
            raise AssertionError(f"check_ddp_consistency: '{fullname}' differs from rank 0")


# ----------------------------------------------------------------------------------------------------
# Summary table.


def print_module_summary(
    module: torch.nn.Module, inputs: Sequence[Any], max_nesting: int = 3, skip_redundant: bool = True
) -> Any:
    """Run module(*inputs) once and print a table of submodules: parameters, buffers, output shapes.

    Returns the module's outputs. Submodules without parameters, buffers or new outputs are hidden
    when skip_redundant.
    """
    if not isinstance(module, torch.nn.Module):
        raise TypeError(f"print_module_summary expects an nn.Module, got {type(module).__name__}")
    if isinstance(module, torch.jit.ScriptModule):
        raise TypeError("print_module_summary does not support ScriptModules")
    if not isinstance(inputs, (tuple, list)):
        raise TypeError("print_module_summary: inputs must be a tuple or list")

    entries: list[dict] = []
    nesting = [0]

    def pre_hook(_mod, _inputs):
        nesting[0] += 1

    def post_hook(mod, _inputs, outputs):
        nesting[0] -= 1
        if nesting[0] <= max_nesting:
            outs = list(outputs) if isinstance(outputs, (tuple, list)) else [outputs]
            outs = [t for t in outs if isinstance(t, torch.Tensor)]
            entries.append({"mod": mod, "outputs": outs})

    hooks = [m.register_forward_pre_hook(pre_hook) for m in module.modules()]
    hooks += [m.register_forward_hook(post_hook) for m in module.modules()]
    try:
        outputs = module(*inputs)
    finally:
        for hook in hooks:
            hook.remove()

    seen: set[int] = set()
    for e in entries:
        e["params"] = [t for t in e["mod"].parameters() if id(t) not in seen]
        e["buffers"] = [t for t in e["mod"].buffers() if id(t) not in seen]
        e["outputs"] = [t for t in e["outputs"] if id(t) not in seen]
        seen |= {id(t) for t in e["params"] + e["buffers"] + e["outputs"]}
    if skip_redundant:
        entries = [e for e in entries if len(e["params"]) or len(e["buffers"]) or len(e["outputs"])]

    names = {mod: name for name, mod in module.named_modules()}
    rows = [[type(module).__name__, "Parameters", "Buffers", "Output shape", "Datatype"]]
    rows.append(["---"] * len(rows[0]))
    total_params = total_buffers = 0
    for e in entries:
        name = "<top-level>" if e["mod"] is module else names[e["mod"]]
        n_params = sum(t.numel() for t in e["params"])
        n_buffers = sum(t.numel() for t in e["buffers"])
        shapes = [str(list(t.shape)) for t in e["outputs"]] or ["-"]
        dtypes = [str(t.dtype).split(".")[-1] for t in e["outputs"]] or ["-"]
        rows.append(
            [
                name + (":0" if len(e["outputs"]) >= 2 else ""),
                str(n_params) if n_params else "-",
                str(n_buffers) if n_buffers else "-",
                shapes[0],
                dtypes[0],
            ]
        )
        for idx in range(1, len(e["outputs"])):
            rows.append([name + f":{idx}", "-", "-", shapes[idx], dtypes[idx]])
        total_params += n_params
        total_buffers += n_buffers
    rows.append(["---"] * len(rows[0]))
    rows.append(["Total", str(total_params), str(total_buffers), "-", "-"])

    widths = [max(len(cell) for cell in column) for column in zip(*rows)]
    print()
    for row in rows:
        print("  ".join(cell + " " * (width - len(cell)) for cell, width in zip(row, widths)))
    print()
    return outputs
