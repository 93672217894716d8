"""Read official StyleGAN2-ADA network pickles without executing anything from the file.

An official snapshot (`network-snapshot-*.pkl`) is `pickle.dump` of a dict {'G', 'D', 'G_ema', 'augment_pipe',
'training_set_kwargs'}. Each network is a `torch_utils.persistence` object: it pickles as a call
`torch_utils.persistence._reconstruct_persistent_obj(meta)` with
meta = {type: 'class', version: 6, module_src: <the whole networks.py source>, class_name, state}, where `state` is
the module's `__dict__` (`_parameters`, `_buffers`, `_modules` of nested persistent objects, `_init_args`,
`_init_kwargs`, plain attributes; numpy scalars appear as attributes). Tensors pickle as
`torch._utils._rebuild_tensor_v2(storage, ...)` / `_rebuild_parameter(...)`, and every storage as
`torch.storage._load_from_bytes(<a legacy torch.save stream>)`.

The official loader `exec`s `module_src`. Here a restricted unpickler resolves only the handful of globals needed to
rebuild tensors and plain containers, each with our own checked implementation; a persistent object becomes an inert
`PersistentRecord` (module_src is never run), and any other global is refused before anything is called.
"""
from __future__ import annotations

import collections
import io
import pickle
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, BinaryIO

import numpy as np
import torch

OFFICIAL_NETWORK_KEYS = ("G", "D", "G_ema", "augment_pipe")


class OfficialPickleError(ValueError):
    """The file is not a StyleGAN2-ADA network pickle we can import, or it is damaged."""


class ForbiddenGlobalError(OfficialPickleError, pickle.UnpicklingError):
    """The pickle references a global outside the allowlist; nothing from it was called."""


@dataclass
class PersistentRecord:
    """Inert stand-in for one `torch_utils.persistence` object: what the official loader would rebuild, not built."""

    class_name: str
    version: int
    state: dict
    module_src_chars: int = 0
    init_args: tuple = field(default_factory=tuple)
    init_kwargs: dict = field(default_factory=dict)


@dataclass
class ImportedNetwork:
    """One top-level network from an official pickle, reduced to what our constructors need."""

    class_name: str
    init_args: list
    init_kwargs: dict
    state_dict: dict[str, torch.Tensor]


# ----------------------------------------------------------------------------
# Safe replacements for the globals an official pickle references.


class _TypeToken:
    """A named class the pickle may mention only as an argument (e.g. the type in _rebuild_from_type)."""

    def __init__(self, name: str):
        self.name = name

    def __repr__(self) -> str:
        return f"<type token {self.name}>"


_TENSOR_TYPE = _TypeToken("torch.Tensor")
_PARAMETER_TYPE = _TypeToken("torch.nn.Parameter")
_NUMERIC_DTYPE_KINDS = "biufc"


def _check_int_tuple(value: Any, what: str) -> tuple[int, ...]:
    if not isinstance(value, (tuple, list)) or not all(isinstance(v, int) and v >= 0 for v in value):
        raise OfficialPickleError(f"tensor record has an invalid {what}: {value!r}")
    return tuple(value)


def _check_no_hooks(hooks: Any) -> None:
    if hooks is not None and (not isinstance(hooks, Mapping) or len(hooks) != 0):
        raise OfficialPickleError("tensor record carries backward hooks; refusing (hooks are code)")


class _EasyDictRecord(dict):
    """Stand-in for dnnlib.util.EasyDict: only a dict. Some Pythons pickle an empty instance __dict__ after it."""

    def __setstate__(self, state: Any) -> None:
        if state:
            raise OfficialPickleError(f"EasyDict record carries unexpected attributes {state!r}")


def _rebuild_tensor(storage: Any, storage_offset: Any, size: Any, stride: Any) -> torch.Tensor:
    if not isinstance(storage, torch.TypedStorage):
        raise OfficialPickleError(f"tensor record expects a storage, got {type(storage).__name__}")
    if not isinstance(storage_offset, int) or storage_offset < 0:
        raise OfficialPickleError(f"tensor record has an invalid storage offset: {storage_offset!r}")
    size = _check_int_tuple(size, "size")
    stride = _check_int_tuple(stride, "stride")
    if len(size) != len(stride):
        raise OfficialPickleError(f"tensor record has size {size} but stride {stride}")
    untyped = storage._untyped_storage
    numel = untyped.nbytes() // storage.dtype.itemsize
    if all(s > 0 for s in size):
        last = storage_offset + sum((s - 1) * st for s, st in zip(size, stride))
        if last >= numel:
            # Tensor.set_ would silently grow the storage; a valid pickle never points past its end.
            raise OfficialPickleError(
                f"tensor record of size {size} at offset {storage_offset} overruns its storage of {numel} elements")
    return torch.empty((0,), dtype=storage.dtype, device=untyped.device).set_(untyped, storage_offset, size, stride)


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, backward_hooks, metadata=None):
    _check_no_hooks(backward_hooks)
    if metadata:
        raise OfficialPickleError(f"tensor record carries unsupported metadata {metadata!r}")
    tensor = _rebuild_tensor(storage, storage_offset, size, stride)
    tensor.requires_grad_(bool(requires_grad) and tensor.is_floating_point())
    return tensor


def _rebuild_parameter(data, requires_grad, backward_hooks):
    _check_no_hooks(backward_hooks)
    if not isinstance(data, torch.Tensor):
        raise OfficialPickleError(f"parameter record expects a tensor, got {type(data).__name__}")
    return torch.nn.Parameter(data, requires_grad=bool(requires_grad))


def _rebuild_parameter_with_state(data, requires_grad, backward_hooks, state):
    if state:
        raise OfficialPickleError(f"parameter record carries unsupported Python state {list(state)!r}")
    return _rebuild_parameter(data, requires_grad, backward_hooks)


def _rebuild_from_type(func, type_token, args, state):
    """Newer torch wraps tensor rebuilds as (func, type, args, __dict__); only plain Tensor/Parameter are allowed."""
    if func not in (_rebuild_tensor_v2, _rebuild_parameter, _rebuild_parameter_with_state):
        raise OfficialPickleError(f"tensor record uses an unsupported rebuild function {func!r}")
    if type_token not in (_TENSOR_TYPE, _PARAMETER_TYPE):
        raise OfficialPickleError(f"tensor record has an unsupported tensor type {type_token!r}")
    if state:
        raise OfficialPickleError(f"tensor record carries unsupported Python state {list(state)!r}")
    tensor = func(*args)
    if type_token is _PARAMETER_TYPE and not isinstance(tensor, torch.nn.Parameter):
        tensor = torch.nn.Parameter(tensor, requires_grad=tensor.requires_grad)
    return tensor


def _load_storage_from_bytes(data: Any) -> torch.TypedStorage:
    """Our `torch.storage._load_from_bytes`: the stream is read by torch's weights-only unpickler, never pickle."""
    if not isinstance(data, (bytes, bytearray)):
        raise OfficialPickleError(f"storage record expects bytes, got {type(data).__name__}")
    try:
        storage = torch.load(io.BytesIO(bytes(data)), map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises UnpicklingError/RuntimeError variants; report them as one thing
        raise OfficialPickleError(f"an embedded tensor storage could not be read safely: {exc}") from None
    if isinstance(storage, torch.UntypedStorage):
        storage = torch.TypedStorage(wrap_storage=storage, dtype=torch.uint8, _internal=True)
    if not isinstance(storage, torch.TypedStorage):
        raise OfficialPickleError(f"an embedded storage stream held a {type(storage).__name__}, not a storage")
    return storage


def _numpy_dtype(spec: Any, align: Any = False, copy: Any = True) -> np.dtype:
    if not isinstance(spec, str):
        raise OfficialPickleError(f"numpy dtype record has a non-string spec {spec!r}")
    dtype = np.dtype(spec, align=bool(align), copy=True)  # copy: BUILD then sets state on our own object
    if dtype.kind not in _NUMERIC_DTYPE_KINDS:
        raise OfficialPickleError(f"numpy dtype {spec!r} is not numeric; refusing")
    return dtype


def _numpy_scalar(dtype: Any, data: Any = None) -> Any:
    if not isinstance(dtype, np.dtype) or dtype.kind not in _NUMERIC_DTYPE_KINDS:
        raise OfficialPickleError(f"numpy scalar record has a non-numeric dtype {dtype!r}")
    if not isinstance(data, bytes) or len(data) != dtype.itemsize:
        raise OfficialPickleError(f"numpy scalar record of dtype {dtype} has invalid data {data!r}")
    return np.frombuffer(data, dtype=dtype)[0]


def _latin1_bytes(text: Any, encoding: Any = "latin1") -> bytes:
    """Protocol-2 pickles spell bytes as `_codecs.encode(text, 'latin1')`; no other codec is allowed."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise OfficialPickleError(f"refusing _codecs.encode with encoding {encoding!r}")
    return text.encode("latin-1")


def _make_record(meta: Any) -> PersistentRecord:
    """Our `torch_utils.persistence._reconstruct_persistent_obj`: keep the meta, never run meta['module_src']."""
    if not isinstance(meta, Mapping):
        raise OfficialPickleError(f"persistent object record has meta of type {type(meta).__name__}, not a dict")
    missing = [k for k in ("type", "version", "class_name", "state") if k not in meta]
    if missing:
        raise OfficialPickleError(f"persistent object record lacks {missing}")
    if meta["type"] != "class":
        raise OfficialPickleError(f"persistent object record of type {meta['type']!r}; only 'class' is supported")
    class_name, state = meta["class_name"], meta["state"]
    if not isinstance(class_name, str):
        raise OfficialPickleError(f"persistent object record has class_name {class_name!r}")
    state = {} if state is None else state
    if not isinstance(state, Mapping):
        raise OfficialPickleError(f"persistent {class_name} record has state of type {type(state).__name__}")
    init_args = state.get("_init_args", ())
    init_kwargs = state.get("_init_kwargs", {})
    if not isinstance(init_args, (tuple, list)) or not isinstance(init_kwargs, Mapping):
        raise OfficialPickleError(f"persistent {class_name} record has malformed _init_args/_init_kwargs")
    src = meta.get("module_src")
    return PersistentRecord(
        class_name=class_name, version=meta["version"], state=dict(state),
        module_src_chars=len(src) if isinstance(src, str) else 0,
        init_args=tuple(init_args), init_kwargs=dict(init_kwargs))


def _torch_dtypes() -> dict[tuple[str, str], Any]:
    names = ["float16", "float32", "float64", "bfloat16", "uint8", "int8", "int16", "int32", "int64", "bool",
             "complex64", "complex128", "half", "float", "double", "long", "int", "short"]
    return {("torch", n): getattr(torch, n) for n in names}


_SAFE_GLOBALS: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter_with_state,
    ("torch._tensor", "_rebuild_from_type"): _rebuild_from_type,
    ("torch._tensor", "_rebuild_from_type_v2"): _rebuild_from_type,
    ("torch.tensor", "_rebuild_from_type"): _rebuild_from_type,  # torch 1.x module name
    ("torch", "Tensor"): _TENSOR_TYPE,
    ("torch.nn.parameter", "Parameter"): _PARAMETER_TYPE,
    ("torch.storage", "_load_from_bytes"): _load_storage_from_bytes,
    ("dnnlib.util", "EasyDict"): _EasyDictRecord,
    ("dnnlib", "EasyDict"): _EasyDictRecord,
    ("_codecs", "encode"): _latin1_bytes,
    ("numpy", "dtype"): _numpy_dtype,
    ("numpy.core.multiarray", "scalar"): _numpy_scalar,
    ("numpy._core.multiarray", "scalar"): _numpy_scalar,
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): _make_record,
    **_torch_dtypes(),
}


_PY2_MODULE_NAMES = {"__builtin__": "builtins", "copy_reg": "copyreg"}


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that resolves only `_SAFE_GLOBALS`; everything else raises ForbiddenGlobalError."""

    def find_class(self, module: str, name: str) -> Any:
        module = _PY2_MODULE_NAMES.get(module, module)  # protocol <= 2 pickles spell builtins '__builtin__'
        try:
            return _SAFE_GLOBALS[(module, name)]
        except KeyError:
            pass
        hint = ""
        if module == "dnnlib.tflib.network":
            hint = " This is a TensorFlow StyleGAN pickle: convert it with the official legacy.py first."
        elif module == "copyreg" and name == "_reconstructor":
            hint = " (a plain Python/torch object that is not a persistent network class)"
        raise ForbiddenGlobalError(
            f"refusing to load global {module}.{name}: only tensors, plain containers and StyleGAN2-ADA "
            f"persistent network records are allowed; nothing from the file was executed.{hint}")

    def persistent_load(self, pid: Any) -> Any:
        raise ForbiddenGlobalError(f"refusing persistent id {pid!r}: not part of a StyleGAN2-ADA network pickle")


def read_official_pickle(file: BinaryIO) -> Any:
    """Unpickle with the restricted unpickler: persistent objects come back as PersistentRecord."""
    try:
        return RestrictedUnpickler(file).load()
    except OfficialPickleError:
        raise
    except (EOFError, pickle.UnpicklingError, ValueError, TypeError, IndexError, KeyError, AttributeError,
            RuntimeError, MemoryError) as exc:
        raise OfficialPickleError(f"the pickle is truncated or corrupt ({type(exc).__name__}: {exc})") from None


# ----------------------------------------------------------------------------
# From records to what our constructors and load_state_dict need.


def _plain(value: Any, where: str) -> Any:
    """JSON-like copy: EasyDict -> dict, tuples -> lists, numpy scalars -> Python numbers; anything else refused."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, Mapping):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise OfficialPickleError(f"{where} has a non-string key {k!r}")
            out[k] = _plain(v, f"{where}.{k}")
        return out
    if isinstance(value, (list, tuple)):
        return [_plain(v, f"{where}[{i}]") for i, v in enumerate(value)]
    raise OfficialPickleError(f"{where} holds a {type(value).__name__}, expected plain JSON-like values")


def record_state_dict(record: PersistentRecord, where: str) -> dict[str, torch.Tensor]:
    """Flatten a record tree into a state_dict: parameters and persistent buffers under dotted names."""
    out: dict[str, torch.Tensor] = {}

    def visit(rec: PersistentRecord, prefix: str) -> None:
        state = rec.state
        params = state.get("_parameters", {}) or {}
        buffers = state.get("_buffers", {}) or {}
        modules = state.get("_modules", {}) or {}
        non_persistent = state.get("_non_persistent_buffers_set", set()) or set()
        for kind, table in (("parameter", params), ("buffer", buffers)):
            if not isinstance(table, Mapping):
                raise OfficialPickleError(f"{where}: {prefix or '<root>'} has malformed _{kind}s")
            for name, tensor in table.items():
                if tensor is None or (kind == "buffer" and name in non_persistent):
                    continue
                if not isinstance(tensor, torch.Tensor):
                    raise OfficialPickleError(f"{where}: {kind} {prefix}{name} is a {type(tensor).__name__}")
                out[prefix + name] = tensor.detach().requires_grad_(False)
        if not isinstance(modules, Mapping):
            raise OfficialPickleError(f"{where}: {prefix or '<root>'} has malformed _modules")
        for name, child in modules.items():
            if child is None:
                continue
            if not isinstance(child, PersistentRecord):
                raise OfficialPickleError(
                    f"{where}: submodule {prefix}{name} is a {type(child).__name__}, not a persistent network record")
            visit(child, f"{prefix}{name}.")

    visit(record, "")
    return out


def imported_network(record: Any, where: str) -> ImportedNetwork:
    """Constructor arguments and state of one top-level record (e.g. where="net.pkl['G_ema']")."""
    if not isinstance(record, PersistentRecord):
        raise OfficialPickleError(f"{where} is a {type(record).__name__}, not a persistent network object")
    return ImportedNetwork(
        class_name=record.class_name,
        init_args=_plain(list(record.init_args), f"{where} init_args"),
        init_kwargs=_plain(record.init_kwargs, f"{where} init_kwargs"),
        state_dict=record_state_dict(record, where))


def parse_official_snapshot(file: BinaryIO, source: str) -> dict[str, Any]:
    """Networks (ImportedNetwork or None) and training_set_kwargs (plain dict or None) of an official pickle."""
    data = read_official_pickle(file)
    if not isinstance(data, Mapping) or not any(k in data for k in OFFICIAL_NETWORK_KEYS):
        raise OfficialPickleError(
            f"{source} is a pickle but not a StyleGAN2-ADA network snapshot (expected a dict with "
            f"{', '.join(OFFICIAL_NETWORK_KEYS)}; got {type(data).__name__})")
    out: dict[str, Any] = {}
    for key in OFFICIAL_NETWORK_KEYS:
        value = data.get(key)
        out[key] = None if value is None else imported_network(value, f"{source}[{key!r}]")
    tsk = data.get("training_set_kwargs")
    out["training_set_kwargs"] = None if tsk is None else _plain(tsk, f"{source}['training_set_kwargs']")
    return out

