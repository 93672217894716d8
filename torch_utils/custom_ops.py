"""Just-in-time build of our CUDA plugins, with a quiet fallback to the pure-PyTorch reference.

Nothing is compiled at import time: an op asks for its plugin the first time it sees a CUDA tensor.
Builds go to ``$RLO_CUDA_CACHE`` (else ``$TORCH_EXTENSIONS_DIR``, else ``~/.cache/rlo_stylegan2/cuda``),
one folder per module and source hash, so editing a kernel never reuses a stale binary.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import threading
import warnings
from types import ModuleType
from typing import Optional, Sequence

import torch


class PluginFallbackWarning(UserWarning):
    """A CUDA plugin could not be used; the op runs its (slower) PyTorch reference instead."""


_cache: dict[str, Optional[ModuleType]] = {}
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
    return h.hexdigest()[:16]


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


def compile_plugin(module_name: str, sources: Sequence[str], headers: Optional[Sequence[str]] = None,
                   source_dir: Optional[str] = None, verbose: bool = False, **build_kwargs) -> ModuleType:
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
    return cpp_extension.load(name=module_name, sources=local_sources, build_directory=build_dir,
                              verbose=verbose, with_cuda=True, **build_kwargs)


def get_plugin(module_name: str, sources: Sequence[str], headers: Optional[Sequence[str]] = None,
               source_dir: Optional[str] = None, **build_kwargs) -> Optional[ModuleType]:
    """The compiled plugin, or None (and ONE PluginFallbackWarning per module) when it cannot be used.

    Reasons for None: no CUDA device, no ninja, no nvcc, compile error. Results are cached per process.
    """
    with _lock:
        if module_name in _cache:
            return _cache[module_name]
        module: Optional[ModuleType] = None
        reason = None
        if not torch.cuda.is_available():
            reason = "no CUDA device is available"
        else:
            try:
                module = compile_plugin(module_name, sources, headers, source_dir, **build_kwargs)
            except Exception as err:  # Compile errors come in many types; all mean "use the reference".
                reason = f"{type(err).__name__}: {str(err).strip()[-2000:]}"
        if module is None:
            warnings.warn(f"CUDA plugin '{module_name}' unavailable ({reason}); "
                          f"falling back to the slower PyTorch reference implementation.",
                          PluginFallbackWarning, stacklevel=3)
        _cache[module_name] = module
        return module


def is_loaded(module_name: str) -> bool:
    """Whether get_plugin already returned a working module for this name."""
    return _cache.get(module_name) is not None

