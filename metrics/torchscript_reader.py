"""Read the tensors of a TorchScript archive (`torch.jit.save` zip) without running any of its code.

StyleGAN2-ADA ships its metric detectors (inception-2015-12-05.pt, vgg16.pt) as TorchScript archives. Loading
them with `torch.jit.load` compiles and runs the TorchScript code inside the file; we only want the weights,
so we unpickle `data.pkl` with an allowlist: module objects become plain attribute records, tensors are rebuilt
from the raw storages in `data/`, and any other global the pickle asks for is refused.
"""

from __future__ import annotations

import collections
import io
import pickle
import zipfile
from typing import Any

import torch

# Legacy typed-storage names that TorchScript pickles use, mapped to dtypes.
_STORAGE_DTYPES: dict[str, torch.dtype] = {
    "DoubleStorage": torch.float64,
    "FloatStorage": torch.float32,
    "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16,
    "LongStorage": torch.int64,
    "IntStorage": torch.int32,
    "ShortStorage": torch.int16,
    "CharStorage": torch.int8,
    "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool,
}


class TorchScriptReadError(ValueError):
    """The file is not a TorchScript archive we can read safely; the message names the file and the reason."""


class ScriptObject:
    """Attributes of one scripted object (module) from the archive; `qualname` is its TorchScript class name."""

    qualname = "?"

    def __setstate__(self, state: Any) -> None:
        self.__dict__["state"] = state

    def __repr__(self) -> str:
        return f"ScriptObject({self.qualname})"


class _StorageType:
    def __init__(self, dtype: torch.dtype):
        self.dtype = dtype


def _rebuild_tensor(storage: torch.Tensor, offset: int, size: tuple, stride: tuple, *_ignored: Any) -> torch.Tensor:
    return torch.as_strided(storage, tuple(size), tuple(stride), int(offset))


def _identity(value: Any, *_ignored: Any) -> Any:
    return value


# torch.jit._pickle helpers that typed lists/dicts go through; each just returns its first argument.
_JIT_PICKLE_HELPERS = {
    "build_intlist",
    "build_tensorlist",
    "build_doublelist",
    "build_boollist",
    "build_list",
    "restore_type_tag",
    "build_tensor_from_id",
}


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, data: bytes, archive: zipfile.ZipFile, prefix: str, source: str):
        super().__init__(io.BytesIO(data))
        self._archive = archive
        self._prefix = prefix
        self._source = source
        self._storages: dict[str, torch.Tensor] = {}
        self._classes: dict[str, type] = {}

    def find_class(self, module: str, name: str) -> Any:
        if module == "__torch__" or module.startswith("__torch__."):
            qualname = f"{module}.{name}"
            if qualname not in self._classes:
                self._classes[qualname] = type("ScriptObject", (ScriptObject,), {"qualname": qualname})
            return self._classes[qualname]
        if module == "torch._utils" and name in ("_rebuild_tensor_v2", "_rebuild_tensor"):
            return _rebuild_tensor
        if module == "torch._utils" and name == "_rebuild_parameter":
            return _identity
        if module == "collections" and name == "OrderedDict":
            return collections.OrderedDict
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(_STORAGE_DTYPES[name])
        if module == "torch.jit._pickle" and name in _JIT_PICKLE_HELPERS:
            return _identity
        raise TorchScriptReadError(
            f"{self._source}: the archive asks for {module}.{name}, which is not a tensor "
            f"or module record; refusing to load it (only weights are read, no code runs)"
        )

    def persistent_load(self, pid: Any) -> torch.Tensor:
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage" and isinstance(pid[1], _StorageType)):
            raise TorchScriptReadError(f"{self._source}: unexpected persistent id {pid!r} in data.pkl")
        _tag, storage_type, key, _location, numel = pid
        key = str(key)
        if key not in self._storages:
            member = f"{self._prefix}data/{key}"
            try:
                raw = self._archive.read(member)
            except KeyError:
                raise TorchScriptReadError(f"{self._source}: storage {member} is missing from the archive") from None
            dtype = storage_type.dtype
            itemsize = torch.empty((), dtype=dtype).element_size()
            if len(raw) < int(numel) * itemsize:
                raise TorchScriptReadError(
                    f"{self._source}: storage {member} holds {len(raw)} bytes, expected {int(numel) * itemsize}"
                )
            flat = (
                torch.frombuffer(bytearray(raw[: int(numel) * itemsize]), dtype=dtype)
                if numel
                else torch.empty(0, dtype=dtype)
            )
            self._storages[key] = flat
        return self._storages[key]


def _find_prefix(archive: zipfile.ZipFile, source: str) -> str:
    names = archive.namelist()
    candidates = [name[: -len("data.pkl")] for name in names if name.endswith("data.pkl") and name.count("/") == 1]
    if len(candidates) != 1:
        raise TorchScriptReadError(
            f"{source}: not a TorchScript archive (expected exactly one <name>/data.pkl, found {len(candidates)})"
        )
    prefix = candidates[0]
    order = f"{prefix}byteorder"
    if order in names and archive.read(order).strip() not in (b"little", b""):
        raise TorchScriptReadError(f"{source}: big-endian archives are not supported")
    return prefix


def read_script_object(path: str) -> ScriptObject:
    """The root scripted object of the archive at `path`, with tensors rebuilt (CPU); no code is executed."""
    if not zipfile.is_zipfile(path):
        raise TorchScriptReadError(f"{path}: not a zip archive, so not a TorchScript file")
    with zipfile.ZipFile(path) as archive:
        prefix = _find_prefix(archive, path)
        unpickler = _RestrictedUnpickler(archive.read(f"{prefix}data.pkl"), archive, prefix, path)
        try:
            root = unpickler.load()
        except TorchScriptReadError:
            raise
        except Exception as err:  # malformed pickle stream
            raise TorchScriptReadError(f"{path}: cannot read data.pkl ({type(err).__name__}: {err})") from None
    if not isinstance(root, ScriptObject):
        raise TorchScriptReadError(f"{path}: the archive root is {type(root).__name__}, not a scripted module")
    return root


def named_tensors(root: ScriptObject) -> dict[str, torch.Tensor]:
    """All tensors reachable through module attributes, keyed by dotted path ('layers.conv.weight'), in file order."""
    found: dict[str, torch.Tensor] = collections.OrderedDict()

    def visit(obj: Any, prefix: str) -> None:
        state = obj.__dict__.get("state")
        if not isinstance(state, dict):
            return
        for key, value in state.items():
            if not isinstance(key, str):
                continue
            if isinstance(value, torch.Tensor):
                found[prefix + key] = value
            elif isinstance(value, ScriptObject):
                visit(value, f"{prefix}{key}.")

    visit(root, "")
    return found


def read_torchscript_tensors(path: str) -> dict[str, torch.Tensor]:
    """Shortcut: `named_tensors(read_script_object(path))`."""
    return named_tensors(read_script_object(path))
