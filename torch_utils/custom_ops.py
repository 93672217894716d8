"""Just-in-time build of our CUDA plugins, a self-check of each against its PyTorch reference, and fallback.

Nothing is compiled at import time: an op asks for its plugin the first time it sees a CUDA tensor.
Builds go to ``$RLO_CUDA_CACHE`` (else ``$TORCH_EXTENSIONS_DIR``, else ``~/.cache/rlo_stylegan2/cuda``),
one folder per module and source hash, so editing a kernel never reuses a stale binary.

Kernels prove themselves: the first time an op meets a (device, dtype) in a process, `use_plugin` runs the
op's self-check (plugin and reference on a small fixed input: values, first- and second-order gradients,
compared by `compare_with_reference`). A failure or any exception gives one `PluginSelfCheckWarning` naming
the op and the error, and that op uses the reference for that (device, dtype) from then on. Verdicts live in
memory only, so a rebuilt plugin is checked again by the next process.

``RLO_CUDA_OPS`` (read when an op first meets a (device, dtype)):
  unset / ``auto``  plugins when they build and pass the self-check, else the reference with one warning;
  ``reference``     never build or use a plugin (the pure-PyTorch path everywhere);
  ``strict``        a plugin that does not build or fails its self-check raises `PluginError` (CI on GPUs).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import shutil
import threading
import time
import warnings
from collections.abc import Callable, Sequence
from types import ModuleType

import torch

OPS_ENV = "RLO_CUDA_OPS"
OPS_MODES = ("auto", "reference", "strict")


class PluginFallbackWarning(UserWarning):
    """A CUDA plugin could not be used; the op runs its (slower) PyTorch reference instead."""


class PluginSelfCheckWarning(PluginFallbackWarning):
    """A plugin op disagreed with (or raised next to) its PyTorch reference on the self-check input."""


class PluginError(RuntimeError):
    """RLO_CUDA_OPS=strict and a plugin op cannot be used (build failure or failed self-check)."""


class PluginMismatch(AssertionError):
    """Raised by compare_with_reference: a plugin result is outside the tolerance of the reference."""


_cache: dict[str, ModuleType | None] = {}
_lock = threading.Lock()


def cache_root() -> str:
    """Folder holding all plugin builds (created on demand)."""
    for var in ("RLO_CUDA_CACHE", "TORCH_EXTENSIONS_DIR"):
        value = os.environ.get(var)
        if value:
            return os.path.abspath(os.path.expanduser(value))
    return os.path.join(os.path.expanduser("~"), ".cache", "rlo_stylegan2", "cuda")


def _source_digest(paths: Sequence[str], build_kwargs: dict) -> str:
    h = hashlib.sha256()
    for path in paths:
        h.update(os.path.basename(path).encode())
        with open(path, "rb") as file:
            h.update(file.read())
    h.update(repr(sorted(build_kwargs.items())).encode())
    h.update(torch.__version__.encode())
    h.update(str(torch.version.cuda).encode())
    h.update(_target_architectures().encode())
    return h.hexdigest()[:16]


def _target_architectures() -> str:
    """What nvcc compiles for: TORCH_CUDA_ARCH_LIST, else the visible devices' compute capabilities (so a build
    for one GPU is never reused on another; the self-check would catch it, at the price of the slow path)."""
    arch = os.environ.get("TORCH_CUDA_ARCH_LIST", "")
    if not arch and torch.cuda.is_available():
        arch = ";".join(
            sorted({"{}.{}".format(*torch.cuda.get_device_capability(i)) for i in range(torch.cuda.device_count())})
        )
    return arch


def _cudart_ldflags(cuda_home: str) -> list[str]:
    """-L flag for libcudart when CUDA_HOME (guessed by torch from nvcc's location) does not hold it.

    Happens when nvcc sits in /usr/local/bin while the toolkit lives in /usr/local/cuda.
    """

    def has_cudart(folder: str) -> bool:
        return os.path.isfile(os.path.join(folder, "libcudart.so"))

    if any(has_cudart(os.path.join(cuda_home, sub)) for sub in ("lib64", "lib")):
        return []
    for root in (os.environ.get("CUDA_PATH"), "/usr/local/cuda", os.path.realpath("/usr/local/cuda")):
        if not root:
            continue
        for sub in ("lib64", "lib", os.path.join("targets", "x86_64-linux", "lib")):
            if has_cudart(os.path.join(root, sub)):
                return [f"-L{os.path.join(root, sub)}"]
    return []


def compile_plugin(
    module_name: str,
    sources: Sequence[str],
    headers: Sequence[str] | None = None,
    source_dir: str | None = None,
    verbose: bool = False,
    **build_kwargs,
) -> ModuleType:
    """Compile (or reuse a cached build of) a torch C++/CUDA extension and import it. Raises on failure.

    sources/headers: file names, relative to source_dir when given. build_kwargs go to
    torch.utils.cpp_extension.load (e.g. extra_cuda_cflags). Does not need a GPU, only nvcc and ninja;
    without a device set TORCH_CUDA_ARCH_LIST (e.g. "9.0") to pick the target architecture.
    """
    from torch.utils import cpp_extension  # Heavy import, deferred until a build is really wanted.

    if source_dir is not None:
        sources = [os.path.join(source_dir, s) for s in sources]
        headers = [os.path.join(source_dir, h) for h in (headers or [])]
    headers = list(headers or [])
    missing = [p for p in list(sources) + headers if not os.path.isfile(p)]
    if missing:
        raise FileNotFoundError(f"plugin {module_name}: source file(s) not found: {missing}")
    cpp_extension.verify_ninja_availability()  # RuntimeError naming ninja when it is absent.
    if cpp_extension.CUDA_HOME is None:
        raise RuntimeError(f"plugin {module_name}: CUDA toolkit (nvcc) not found; set CUDA_HOME")

    build_kwargs = dict(build_kwargs)
    extra_ldflags = list(build_kwargs.get("extra_ldflags", []))
    build_kwargs["extra_ldflags"] = extra_ldflags + _cudart_ldflags(cpp_extension.CUDA_HOME)

    build_dir = os.path.join(cache_root(), f"{module_name}_{_source_digest(list(sources) + headers, build_kwargs)}")
    os.makedirs(build_dir, exist_ok=True)
    # Copy the sources beside the build so the folder is self-contained and headers resolve.
    local_sources = []
    for path in list(sources) + headers:
        dst = os.path.join(build_dir, os.path.basename(path))
        if not os.path.isfile(dst):
            tmp = f"{dst}.tmp{os.getpid()}"
            shutil.copyfile(path, tmp)
            os.replace(tmp, dst)
        if path in sources:
            local_sources.append(dst)
    return cpp_extension.load(
        name=module_name,
        sources=local_sources,
        build_directory=build_dir,
        verbose=verbose,
        with_cuda=True,
        **build_kwargs,
    )


def get_plugin(
    module_name: str,
    sources: Sequence[str],
    headers: Sequence[str] | None = None,
    source_dir: str | None = None,
    **build_kwargs,
) -> ModuleType | None:
    """The compiled plugin, or None (and ONE PluginFallbackWarning per module) when it cannot be used.

    Reasons for None: no CUDA device, no ninja, no nvcc, compile error. Results are cached per process.
    """
    with _lock:
        if module_name in _cache:
            return _cache[module_name]
        module: ModuleType | None = None
        reason = None
        if not torch.cuda.is_available():
            reason = "no CUDA device is available"
        else:
            try:
                module = compile_plugin(module_name, sources, headers, source_dir, **build_kwargs)
            except Exception as err:  # Compile errors come in many types; all mean "use the reference".
                reason = f"{type(err).__name__}: {str(err).strip()[-2000:]}"
        if module is None:
            warnings.warn(
                f"CUDA plugin '{module_name}' unavailable ({reason}); "
                f"falling back to the slower PyTorch reference implementation.",
                PluginFallbackWarning,
                stacklevel=3,
            )
        _cache[module_name] = module
        return module


def is_loaded(module_name: str) -> bool:
    """Whether get_plugin already returned a working module for this name."""
    return _cache.get(module_name) is not None


# ----------------------------------------------------------------------------------------------------
# Self-check: which (op, device, dtype) may use its plugin.

# Device types that plugin ops run on. Tests add "cpu" to drive stand-in plugins (plugin_contract.py) on CPU.
plugin_device_types: set[str] = {"cuda"}

# Normwise tolerance of the self-check per dtype: every output and gradient must satisfy
# max|plugin - reference| <= tol * max(1, max|reference|), the reference computed in float64 from the same
# (already rounded) inputs. float32 leaves ~100x headroom over --use_fast_math rounding; the half types allow
# the ~10 roundings of a second-order gradient chain. A broken kernel is off by O(1).
SELF_CHECK_TOLERANCE: dict[torch.dtype, float] = {
    torch.float64: 1e-10,
    torch.float32: 1e-4,
    torch.float16: 2e-2,
    torch.bfloat16: 1e-1,
}


@dataclasses.dataclass(frozen=True)
class SelfCheckResult:
    """Outcome of one op's self-check on one (device, dtype): passed, or the error that made it fall back."""

    op: str
    device: str
    dtype: str
    passed: bool
    error: str
    seconds: float


_verdicts: dict[tuple[str, int, torch.dtype], bool] = {}  # (op, device index or -1 for CPU, dtype)
_results: list[SelfCheckResult] = []
_check_lock = threading.Lock()


def ops_mode() -> str:
    """RLO_CUDA_OPS: 'auto' (default), 'reference' or 'strict'; anything else is an error."""
    mode = os.environ.get(OPS_ENV, "").strip().lower() or "auto"
    if mode not in OPS_MODES:
        raise ValueError(f"{OPS_ENV}={os.environ.get(OPS_ENV)!r} is not one of {OPS_MODES} (unset means 'auto')")
    return mode


def use_plugin(
    op: str,
    x: torch.Tensor,
    load: Callable[[], ModuleType | None],
    self_check: Callable[[torch.device, torch.dtype], None],
) -> bool:
    """Whether `op` runs its plugin for tensors like x; the first call per (op, device, dtype) decides.

    load: returns the plugin module or None (after its own warning). self_check(device, dtype): runs plugin
    and reference and raises on disagreement. After the first call this is one dictionary lookup.
    """
    if not x.is_cuda and "cpu" not in plugin_device_types:  # the common CPU case, in one attribute read
        return False
    key = (op, x.get_device(), x.dtype)  # get_device(): an int, cheaper than building a torch.device
    verdict = _verdicts.get(key)
    if verdict is not None:
        return verdict
    if x.device.type not in plugin_device_types:
        return False
    with _check_lock:
        verdict = _verdicts.get(key)
        if verdict is None:
            verdict = _decide(op, x.device, x.dtype, load, self_check)
            _verdicts[key] = verdict
    return verdict


def _decide(
    op: str,
    device: torch.device,
    dtype: torch.dtype,
    load: Callable[[], ModuleType | None],
    self_check: Callable[[torch.device, torch.dtype], None],
) -> bool:
    mode = ops_mode()
    if mode == "reference":
        return False
    if load() is None:
        if mode == "strict":
            raise PluginError(
                f"{OPS_ENV}=strict: the CUDA plugin for '{op}' is unavailable (see the "
                f"PluginFallbackWarning above for why)"
            )
        return False
    start = time.perf_counter()
    try:
        # Fresh leaves under grad mode, full precision, whatever the caller's context (no_grad, autocast,
        # inference_mode); a local generator leaves the global RNG streams untouched.
        with torch.inference_mode(False), torch.enable_grad(), torch.autocast(device.type, enabled=False):
            self_check(device, dtype)
        error = ""
    except Exception as err:  # a mismatch or any failure of the plugin: all mean "do not trust it"
        error = f"{type(err).__name__}: {str(err).strip()[-1000:]}"
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    _results.append(
        SelfCheckResult(
            op, str(device), str(dtype).replace("torch.", ""), not error, error, time.perf_counter() - start
        )
    )
    if not error:
        return True
    message = (
        f"CUDA plugin op '{op}' ({str(dtype).replace('torch.', '')} on {device}) failed its self-check "
        f"against the PyTorch reference: {error}"
    )
    if mode == "strict":
        raise PluginError(f"{OPS_ENV}=strict: {message}")
    warnings.warn(
        f"{message}; using the slower PyTorch reference for it from now on.", PluginSelfCheckWarning, stacklevel=4
    )
    return False


def self_check_results() -> list[SelfCheckResult]:
    """Every self-check this process ran, in order (for reports such as tools/gpu_check.py)."""
    return list(_results)


def reset_self_checks() -> None:
    """Forget all verdicts, so the next op call checks again (tests; a changed RLO_CUDA_OPS)."""
    with _check_lock:
        _verdicts.clear()
        _results.clear()


def compare_with_reference(
    pairs: Sequence[tuple[str, torch.Tensor | None, torch.Tensor | None]], dtype: torch.dtype
) -> None:
    """Raise PluginMismatch naming the first failing entry unless every (label, plugin, reference) pair agrees.

    None counts as zeros (an unused gradient). Agreement: max|plugin - reference| <= tol * max(1, max|reference|)
    with tol = SELF_CHECK_TOLERANCE[dtype]; NaN/inf in the plugin result never agrees. One host sync in all.
    """
    tol = SELF_CHECK_TOLERANCE.get(dtype, 1e-4)
    labels, stats = [], []
    for label, got, want in pairs:
        if got is None and want is None:
            continue
        if got is None:
            got = torch.zeros_like(want)
        if want is None:
            want = torch.zeros_like(got)
        if got.shape != want.shape:
            raise PluginMismatch(f"{label}: plugin shape {tuple(got.shape)} != reference {tuple(want.shape)}")
        want = want.detach().double()
        err = (got.detach().double() - want).abs().max() if got.numel() else want.new_zeros([])
        scale = want.abs().max().clamp(min=1.0) if want.numel() else want.new_ones([])
        labels.append(label)
        stats.append(torch.stack([err, scale]))
    if not stats:
        return
    values = torch.stack(stats).cpu().tolist()
    # Pairs come in dependency order (values, then gradients), so the first failure is the likeliest cause.
    bad = [(label, err, scale) for label, (err, scale) in zip(labels, values) if not err <= tol * scale]
    if bad:
        label, err, scale = bad[0]
        raise PluginMismatch(
            f"{label}: max|plugin - reference| = {err:.3g} exceeds {tol:g} x {scale:.3g} "
            f"({len(bad)} of {len(labels)} tensors outside the tolerance)"
        )
