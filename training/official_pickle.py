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

Before that, `check_pickle_structure` walks the opcode stream without building anything and refuses a stream whose
objects would nest deeper than MAX_PICKLE_DEPTH, contain themselves, expand past MAX_PICKLE_ITEMS (a 500-byte file
can share records exponentially), declare more bytes than the file holds, use containers as dict keys or set
members (hashing them is unbounded work), or set state on anything but the few objects official pickles set it on.
Error messages show the file's values through `short_repr` and are one line.
"""

from __future__ import annotations

import collections
import io
import pickle
import pickletools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, BinaryIO

import numpy as np
import torch

OFFICIAL_NETWORK_KEYS = ("G", "D", "G_ema", "augment_pipe")
MAX_PICKLE_DEPTH = 100  # containers inside containers; an official network pickle nests 32 deep
MAX_PICKLE_ITEMS = 2_000_000  # objects, a shared one counted at every use; official G, D, G_ema at 256x256: 25,000
MAX_MESSAGE_CHARS = 1000


def one_line(text: Any, limit: int = MAX_MESSAGE_CHARS) -> str:
    """`text` with every whitespace run (newlines included) collapsed to one space, cut to `limit` characters."""
    text = " ".join(str(text)[: 2 * limit].split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def short_repr(value: Any, limit: int = 120) -> str:
    """repr of a value read from a file, cut to about `limit` characters; bounded work on any structure."""
    return one_line(_short(value, 0, limit), limit)


def _short(obj: Any, depth: int, limit: int) -> str:
    if isinstance(obj, (str, bytes, bytearray)):
        return repr(obj[:limit]) + ("..." if len(obj) > limit else "")
    if isinstance(obj, int) and not isinstance(obj, bool) and obj.bit_length() > 64:
        return f"<int of {obj.bit_length()} bits>"
    if obj is None or isinstance(obj, (bool, int, float, np.generic, np.dtype, _TypeToken)):
        return repr(obj)
    if isinstance(obj, torch.Tensor):
        return f"<tensor {list(obj.shape)} {obj.dtype}>"
    if isinstance(obj, PersistentRecord):
        return f"<persistent {_short(obj.class_name, depth + 1, 40)} record>"
    if isinstance(obj, (Mapping, list, tuple, set, frozenset)):
        brackets = "{}" if isinstance(obj, (Mapping, set, frozenset)) else "()" if isinstance(obj, tuple) else "[]"
        if depth >= 2:
            return f"{brackets[0]}...{brackets[1]}"
        items = list(obj.items())[:4] if isinstance(obj, Mapping) else [(None, v) for v in list(obj)[:4]]
        parts = [
            (f"{_short(k, depth + 1, 40)}: " if isinstance(obj, Mapping) else "") + _short(v, depth + 1, 40)
            for k, v in items
        ]
        return brackets[0] + ", ".join(parts + (["..."] if len(obj) > 4 else [])) + brackets[1]
    return f"<{type(obj).__name__}>"


class OfficialPickleError(ValueError):
    """The file is not a StyleGAN2-ADA network pickle we can import, or it is damaged (a one-line message)."""

    def __init__(self, message: Any):
        super().__init__(one_line(message))


class ForbiddenGlobalError(OfficialPickleError, pickle.UnpicklingError):
    """The pickle references a global outside the allowlist; nothing from it was called."""


@dataclass(repr=False)
class PersistentRecord:
    """Inert stand-in for one `torch_utils.persistence` object: what the official loader would rebuild, not built."""

    class_name: str
    version: int
    state: dict
    module_src_chars: int = 0
    init_args: tuple = field(default_factory=tuple)
    init_kwargs: dict = field(default_factory=dict)

    def __repr__(self) -> str:  # the dataclass repr would walk the whole (possibly shared or cyclic) state
        return f"PersistentRecord({short_repr(self.class_name)}, version={short_repr(self.version)})"


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
        raise OfficialPickleError(f"tensor record has an invalid {what}: {short_repr(value)}")
    return tuple(value)


def _check_no_hooks(hooks: Any) -> None:
    if hooks is not None and (not isinstance(hooks, Mapping) or len(hooks) != 0):
        raise OfficialPickleError("tensor record carries backward hooks; refusing (hooks are code)")


_ATOMIC_TYPES = (str, bytes, int, float, bool, type(None))


def _check_atomic(keys: Any, what: str) -> None:
    """Dict keys and set members must be plain values: hashing a nested tuple can take unbounded time."""
    for key in keys:
        if not isinstance(key, _ATOMIC_TYPES):
            raise OfficialPickleError(
                f"{what} {short_repr(key)} is a {type(key).__name__}; only strings and numbers are allowed"
            )


def _ordered_dict(items: Any = ()) -> collections.OrderedDict:
    pairs = list(items.items() if isinstance(items, Mapping) else items)
    if not all(isinstance(p, (tuple, list)) and len(p) == 2 for p in pairs):
        raise OfficialPickleError(f"OrderedDict record has items {short_repr(pairs)}, not (key, value) pairs")
    _check_atomic((k for k, _ in pairs), "OrderedDict key")
    return collections.OrderedDict(pairs)


def _set(items: Any = ()) -> set:
    items = list(items)
    _check_atomic(items, "set member")
    return set(items)


def _frozenset(items: Any = ()) -> frozenset:
    return frozenset(_set(items))


class _EasyDictRecord(dict):
    """Stand-in for dnnlib.util.EasyDict: only a dict. Some Pythons pickle an empty instance __dict__ after it."""

    def __init__(self, *args: Any, **kwargs: Any):
        if args or kwargs:
            raise OfficialPickleError(
                "EasyDict record is constructed with arguments; official pickles fill it by items"
            )
        super().__init__()

    def __setstate__(self, state: Any) -> None:
        if state:
            raise OfficialPickleError(f"EasyDict record carries unexpected attributes {short_repr(state)}")


def _rebuild_tensor(storage: Any, storage_offset: Any, size: Any, stride: Any) -> torch.Tensor:
    if not isinstance(storage, torch.TypedStorage):
        raise OfficialPickleError(f"tensor record expects a storage, got {type(storage).__name__}")
    if not isinstance(storage_offset, int) or storage_offset < 0:
        raise OfficialPickleError(f"tensor record has an invalid storage offset: {short_repr(storage_offset)}")
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
                f"tensor record of size {size} at offset {storage_offset} overruns its storage of {numel} elements"
            )
    return torch.empty((0,), dtype=storage.dtype, device=untyped.device).set_(untyped, storage_offset, size, stride)


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, backward_hooks, metadata=None):
    _check_no_hooks(backward_hooks)
    if metadata:
        raise OfficialPickleError(f"tensor record carries unsupported metadata {short_repr(metadata)}")
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
        raise OfficialPickleError(f"parameter record carries unsupported Python state {short_repr(state)}")
    return _rebuild_parameter(data, requires_grad, backward_hooks)


def _rebuild_from_type(func, type_token, args, state):
    """Newer torch wraps tensor rebuilds as (func, type, args, __dict__); only plain Tensor/Parameter are allowed."""
    if func not in (_rebuild_tensor_v2, _rebuild_parameter, _rebuild_parameter_with_state):
        raise OfficialPickleError(f"tensor record uses an unsupported rebuild function {short_repr(func)}")
    if type_token not in (_TENSOR_TYPE, _PARAMETER_TYPE):
        raise OfficialPickleError(f"tensor record has an unsupported tensor type {short_repr(type_token)}")
    if state:
        raise OfficialPickleError(f"tensor record carries unsupported Python state {short_repr(state)}")
    if not isinstance(args, (tuple, list)):
        raise OfficialPickleError(f"tensor record has arguments {short_repr(args)}, not a tuple")
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
        raise OfficialPickleError(f"numpy dtype record has a non-string spec {short_repr(spec)}")
    dtype = np.dtype(spec, align=bool(align), copy=True)  # copy: BUILD then sets state on our own object
    if dtype.kind not in _NUMERIC_DTYPE_KINDS:
        raise OfficialPickleError(f"numpy dtype {short_repr(spec)} is not numeric; refusing")
    return dtype


def _numpy_scalar(dtype: Any, data: Any = None) -> Any:
    if not isinstance(dtype, np.dtype) or dtype.kind not in _NUMERIC_DTYPE_KINDS:
        raise OfficialPickleError(f"numpy scalar record has a non-numeric dtype {short_repr(dtype)}")
    if not isinstance(data, bytes) or len(data) != dtype.itemsize:
        raise OfficialPickleError(f"numpy scalar record of dtype {dtype} has invalid data {short_repr(data)}")
    return np.frombuffer(data, dtype=dtype)[0]


def _latin1_bytes(text: Any, encoding: Any = "latin1") -> bytes:
    """Protocol-2 pickles spell bytes as `_codecs.encode(text, 'latin1')`; no other codec is allowed."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise OfficialPickleError(f"refusing _codecs.encode with encoding {short_repr(encoding)}")
    return text.encode("latin-1")


def _make_record(meta: Any) -> PersistentRecord:
    """Our `torch_utils.persistence._reconstruct_persistent_obj`: keep the meta, never run meta['module_src']."""
    if not isinstance(meta, Mapping):
        raise OfficialPickleError(f"persistent object record has meta of type {type(meta).__name__}, not a dict")
    missing = [k for k in ("type", "version", "class_name", "state") if k not in meta]
    if missing:
        raise OfficialPickleError(f"persistent object record lacks {missing}")
    if meta["type"] != "class":
        raise OfficialPickleError(
            f"persistent object record of type {short_repr(meta['type'])}; only 'class' is supported"
        )
    class_name, state = meta["class_name"], meta["state"]
    if not isinstance(class_name, str) or not class_name.isidentifier() or len(class_name) > 100:
        raise OfficialPickleError(f"persistent object record has class_name {short_repr(class_name)}")
    state = {} if state is None else state
    if not isinstance(state, Mapping):
        raise OfficialPickleError(f"persistent {class_name} record has state of type {type(state).__name__}")
    init_args = state.get("_init_args", ())
    init_kwargs = state.get("_init_kwargs", {})
    if not isinstance(init_args, (tuple, list)) or not isinstance(init_kwargs, Mapping):
        raise OfficialPickleError(f"persistent {class_name} record has malformed _init_args/_init_kwargs")
    src = meta.get("module_src")
    return PersistentRecord(
        class_name=class_name,
        version=meta["version"],
        state=dict(state),
        module_src_chars=len(src) if isinstance(src, str) else 0,
        init_args=tuple(init_args),
        init_kwargs=dict(init_kwargs),
    )


def _torch_dtypes() -> dict[tuple[str, str], Any]:
    names = [
        "float16",
        "float32",
        "float64",
        "bfloat16",
        "uint8",
        "int8",
        "int16",
        "int32",
        "int64",
        "bool",
        "complex64",
        "complex128",
        "half",
        "float",
        "double",
        "long",
        "int",
        "short",
    ]
    return {("torch", n): getattr(torch, n) for n in names}


_SAFE_GLOBALS: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): _ordered_dict,
    ("builtins", "set"): _set,
    ("builtins", "frozenset"): _frozenset,
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


def _forbidden_global(module: str, name: str) -> ForbiddenGlobalError:
    hint = ""
    if module == "dnnlib.tflib.network":
        hint = " This is a TensorFlow StyleGAN pickle: convert it with the official legacy.py first."
    elif module == "copyreg" and name == "_reconstructor":
        hint = " (a plain Python/torch object that is not a persistent network class)"
    return ForbiddenGlobalError(
        f"refusing to load global {one_line(module, 100)}.{one_line(name, 100)}: only tensors, plain containers "
        f"and StyleGAN2-ADA persistent network records are allowed; nothing from the file was executed.{hint}"
    )


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that resolves only `_SAFE_GLOBALS`; everything else raises ForbiddenGlobalError."""

    def find_class(self, module: str, name: str) -> Any:
        module = _PY2_MODULE_NAMES.get(module, module)  # protocol <= 2 pickles spell builtins '__builtin__'
        try:
            return _SAFE_GLOBALS[(module, name)]
        except KeyError:
            raise _forbidden_global(module, name) from None

    def persistent_load(self, pid: Any) -> Any:
        raise ForbiddenGlobalError(
            f"refusing persistent id {short_repr(pid)}: not part of a StyleGAN2-ADA network pickle"
        )


# ----------------------------------------------------------------------------
# The structure of the opcode stream, checked before anything is built.

# The objects on which official pickles set state (BUILD): EasyDicts (an empty __dict__) and numpy dtypes.
_BUILDABLE = {("dnnlib.util", "EasyDict"), ("dnnlib", "EasyDict"), ("numpy", "dtype")}
_IN_PLACE_OPS = {"APPEND", "APPENDS", "SETITEM", "SETITEMS", "ADDITEMS", "BUILD"}


class _Global:
    """A GLOBAL in the stream (a leaf), refused here when it is known and not allowlisted."""

    __slots__ = ("name",)

    def __init__(self, name: tuple[str, str] | None):
        if name is not None:
            name = (_PY2_MODULE_NAMES.get(name[0], name[0]), name[1])
            if name not in _SAFE_GLOBALS:
                raise _forbidden_global(*name)
        self.name = name


class _Node:
    """A container or call result in the stream: what it will hold, as nodes and leaves."""

    __slots__ = ("children", "creator")

    def __init__(self, children: list, creator: Any = None):
        self.children = children
        self.creator = creator  # the _Global a call or NEWOBJ used, if it was a direct global


class _Str:
    """A string in the stream (a leaf), kept so that STACK_GLOBAL's module and name are known."""

    __slots__ = ("value",)

    def __init__(self, value: str):
        self.value = value


_LEAF = object()  # numbers, bytes, None, empty tuples: they hold nothing


class _BoundedReader:
    """read() that never asks `file` for more bytes than remain (a declared length can be 2**63)."""

    def __init__(self, file: BinaryIO, end: int):
        self._file, self._end = file, end

    def read(self, n: int = -1) -> bytes:
        remaining = max(self._end - self._file.tell(), 0)
        return self._file.read(remaining if n is None or n < 0 else min(n, remaining))


_OPCODES = {op.code.encode("latin-1"): op for op in pickletools.opcodes}
# Length-prefixed byte strings, (length width, signed): the scan skips their bytes (the tensor storages).
_SKIPPED_ARGS = {
    "bytes1": (1, False),
    "string1": (1, False),
    "bytes4": (4, False),
    "string4": (4, True),
    "bytes8": (8, False),
    "bytearray8": (8, False),
}


def _opcodes(file: BinaryIO, end: int):
    """(opcode, argument) pairs like pickletools.genops, skipping over byte-string contents; ends at STOP."""
    bounded = _BoundedReader(file, end)
    while True:
        code = file.read(1)
        if not code:
            raise _structure_error("is truncated (no STOP opcode)")
        op = _OPCODES.get(code)
        if op is None:
            raise _structure_error(f"is corrupt (unknown opcode {code!r} at byte {file.tell() - 1})")
        arg = None
        if op.arg is not None and op.arg.name in _SKIPPED_ARGS:
            width, signed = _SKIPPED_ARGS[op.arg.name]
            prefix = file.read(width)
            length = int.from_bytes(prefix, "little", signed=signed) if len(prefix) == width else -1
            if length < 0 or length > end - file.tell():
                raise _structure_error(f"is truncated or corrupt ({op.name} declares more bytes than the file holds)")
            file.seek(length, io.SEEK_CUR)
        elif op.arg is not None:  # declared lengths of unicode strings are bounded too
            arg = op.arg.reader(bounded if op.arg.name in ("unicodestring4", "unicodestring8") else file)
        yield op, arg
        if op.name == "STOP":
            return


def _structure_error(message: str) -> OfficialPickleError:
    return OfficialPickleError(f"the pickle {message}; refusing before building anything")


def _global_name(arg: Any) -> tuple[str, str] | None:
    if isinstance(arg, str) and " " in arg:
        module, name = arg.split(" ", 1)
        return module, name
    return None


def check_pickle_structure(file: BinaryIO) -> None:
    """Refuse (OfficialPickleError) a pickle stream too deep, self-containing, too large when expanded, or
    otherwise unbounded to unpickle; reads `file` from its position to the STOP opcode and seeks back.

    Nothing is built: every container is a node listing what it will hold, so the check costs one pass over the
    opcodes plus one over the nodes.
    """
    start = file.tell()
    end = file.seek(0, io.SEEK_END)
    file.seek(start)
    stack: list[Any] = []
    marks: list[int] = []
    memo: dict[int, Any] = {}

    def pop(count: int = 1) -> list[Any]:
        fence = marks[-1] if marks else 0
        if len(stack) - count < fence:
            raise _structure_error("is corrupt (its stack underflows)")
        items = stack[len(stack) - count :]
        del stack[len(stack) - count :]
        return items

    def pop_to_mark() -> list[Any]:
        if not marks:
            raise _structure_error("is corrupt (a MARK is missing)")
        at = marks.pop()
        items = stack[at:]
        del stack[at:]
        return items

    def keys_are_leaves(keys: list[Any]) -> None:
        if any(isinstance(k, _Node) for k in keys):
            raise _structure_error("uses a container as a dict key or set member")

    def target() -> _Node:
        if not stack or not isinstance(stack[-1], _Node):
            raise _structure_error("modifies a value that is not a container")
        return stack[-1]

    try:
        for op, arg in _opcodes(file, end):
            name = op.name
            if name in ("PROTO", "FRAME"):
                continue
            if name == "STOP":
                root = pop()[0]
                break
            if name == "MARK":
                marks.append(len(stack))
            elif name == "POP":
                if marks and len(stack) == marks[-1]:
                    marks.pop()
                else:
                    pop()
            elif name == "POP_MARK":
                pop_to_mark()
            elif name == "DUP":
                stack.append(pop()[0])
                stack.append(stack[-1])
            elif name in ("PUT", "BINPUT", "LONG_BINPUT", "MEMOIZE"):
                if not stack:
                    raise _structure_error("is corrupt (it memoizes from an empty stack)")
                memo[len(memo) if name == "MEMOIZE" else int(arg)] = stack[-1]
            elif name in ("GET", "BINGET", "LONG_BINGET"):
                if int(arg) not in memo:
                    raise _structure_error(f"is corrupt (memo entry {int(arg)} is read before it is written)")
                stack.append(memo[int(arg)])
            elif name in ("EMPTY_LIST", "EMPTY_DICT", "EMPTY_SET"):
                stack.append(_Node([]))
            elif name in ("LIST", "TUPLE", "DICT", "FROZENSET"):
                items = pop_to_mark()
                if name == "DICT":
                    keys_are_leaves(items[0::2])
                elif name == "FROZENSET":
                    keys_are_leaves(items)
                stack.append(_Node(items))
            elif name in ("TUPLE1", "TUPLE2", "TUPLE3"):
                stack.append(_Node(pop(int(name[-1]))))
            elif name in _IN_PLACE_OPS:
                if name == "APPEND" or name == "BUILD":
                    items = pop()
                elif name == "SETITEM":
                    items = pop(2)
                    keys_are_leaves(items[:1])
                else:
                    items = pop_to_mark()
                    keys_are_leaves(items[0::2] if name == "SETITEMS" else items if name == "ADDITEMS" else [])
                obj = target()
                if name == "BUILD" and not (isinstance(obj.creator, _Global) and obj.creator.name in _BUILDABLE):
                    creator = obj.creator.name if isinstance(obj.creator, _Global) else None
                    raise _structure_error(
                        f"sets state on a {'.'.join(creator) if creator else 'value'} "
                        f"(official pickles set it only on EasyDicts and numpy dtypes)"
                    )
                obj.children.extend(items)
            elif name in ("REDUCE", "NEWOBJ", "NEWOBJ_EX", "OBJ", "INST"):  # calls: the callable comes first
                items = pop(2) if name in ("REDUCE", "NEWOBJ") else pop(3) if name == "NEWOBJ_EX" else pop_to_mark()
                creator = _Global(_global_name(arg)) if name == "INST" else (items[0] if items else None)
                stack.append(_Node(items, creator))
            elif name == "GLOBAL":
                stack.append(_Global(_global_name(arg)))
            elif name == "STACK_GLOBAL":
                module, qualname = pop(2)
                known = isinstance(module, _Str) and isinstance(qualname, _Str)
                stack.append(_Global((module.value, qualname.value) if known else None))
            elif name == "BINPERSID":
                pop()
                stack.append(_LEAF)
            elif not op.stack_before and len(op.stack_after) == 1 and name != "NEXT_BUFFER":
                # numbers, strings, bytes, None, booleans, EXT* and PERSID references
                stack.append(_Str(arg) if isinstance(arg, str) and "unicode" in op.arg.name else _LEAF)
            else:
                raise _structure_error(f"uses the unsupported opcode {name}")
    except OfficialPickleError:
        raise
    except (ValueError, EOFError, KeyError, IndexError, UnicodeDecodeError, OverflowError) as exc:
        raise _structure_error(f"is truncated or corrupt ({type(exc).__name__}: {exc})") from None
    file.seek(start)
    _check_expanded_size(root)


def _check_expanded_size(root: Any) -> None:
    """Depth and size of `root` with shared nodes counted at every use, and no node inside itself."""
    size: dict[int, int] = {}
    depth: dict[int, int] = {}
    on_path: set[int] = set()
    todo: list[tuple[Any, bool]] = [(root, False)]
    while todo:
        node, leaving = todo.pop()
        if not isinstance(node, _Node):
            continue
        key = id(node)
        if leaving:
            on_path.discard(key)
            kids = [c for c in node.children if isinstance(c, _Node)]
            size[key] = min(1 + len(node.children) - len(kids) + sum(size[id(c)] for c in kids), MAX_PICKLE_ITEMS + 1)
            depth[key] = 1 + max((depth[id(c)] for c in kids), default=0)
            if size[key] > MAX_PICKLE_ITEMS:
                raise _structure_error(f"holds more than {MAX_PICKLE_ITEMS:,} objects once shared records are expanded")
            if depth[key] > MAX_PICKLE_DEPTH:
                raise _structure_error(f"nests containers more than {MAX_PICKLE_DEPTH} deep")
            continue
        if key in size:
            continue
        if key in on_path:
            raise _structure_error("holds a record that contains itself")
        on_path.add(key)
        todo.append((node, True))
        for child in node.children:
            if isinstance(child, _Node):
                if id(child) in on_path:
                    raise _structure_error("holds a record that contains itself")
                if id(child) not in size:
                    todo.append((child, False))


def read_official_pickle(file: BinaryIO) -> Any:
    """Check the stream's structure, then unpickle it with the restricted unpickler (persistent objects come
    back as PersistentRecord)."""
    check_pickle_structure(file)
    try:
        return RestrictedUnpickler(file).load()
    except OfficialPickleError:
        raise
    except (
        EOFError,
        pickle.UnpicklingError,
        ValueError,
        TypeError,
        IndexError,
        KeyError,
        AttributeError,
        RuntimeError,
        MemoryError,
        OverflowError,
        UnicodeDecodeError,
        RecursionError,
    ) as exc:
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
                raise OfficialPickleError(f"{where} has a non-string key {short_repr(k)}")
            out[k] = _plain(v, f"{where}.{one_line(k, 60)}")
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
        if not isinstance(non_persistent, (set, frozenset)):
            raise OfficialPickleError(f"{where}: {prefix or '<root>'} has a malformed _non_persistent_buffers_set")
        for kind, table in (("parameter", params), ("buffer", buffers), ("module", modules)):
            if not isinstance(table, Mapping):
                raise OfficialPickleError(f"{where}: {prefix or '<root>'} has malformed _{kind}s")
            bad = next((k for k in table if not isinstance(k, str)), None)
            if bad is not None:
                raise OfficialPickleError(f"{where}: {prefix or '<root>'} names a {kind} {short_repr(bad)}")
        for kind, table in (("parameter", params), ("buffer", buffers)):
            for name, tensor in table.items():
                if tensor is None or (kind == "buffer" and name in non_persistent):
                    continue
                if not isinstance(tensor, torch.Tensor):
                    raise OfficialPickleError(
                        f"{where}: {kind} {one_line(prefix + name, 200)} is a {type(tensor).__name__}"
                    )
                out[prefix + name] = tensor.detach().requires_grad_(False)
        for name, child in modules.items():
            if child is None:
                continue
            if not isinstance(child, PersistentRecord):
                raise OfficialPickleError(
                    f"{where}: submodule {one_line(prefix + name, 200)} is a "
                    f"{type(child).__name__}, not a persistent network record"
                )
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
        state_dict=record_state_dict(record, where),
    )


def parse_official_snapshot(file: BinaryIO, source: str) -> dict[str, Any]:
    """Networks (ImportedNetwork or None) and training_set_kwargs (plain dict or None) of an official pickle."""
    data = read_official_pickle(file)
    if not isinstance(data, Mapping) or not any(k in data for k in OFFICIAL_NETWORK_KEYS):
        raise OfficialPickleError(
            f"{source} is a pickle but not a StyleGAN2-ADA network snapshot (expected a dict with "
            f"{', '.join(OFFICIAL_NETWORK_KEYS)}; got {type(data).__name__})"
        )
    out: dict[str, Any] = {}
    for key in OFFICIAL_NETWORK_KEYS:
        value = data.get(key)
        out[key] = None if value is None else imported_network(value, f"{source}[{key!r}]")
    tsk = data.get("training_set_kwargs")
    out["training_set_kwargs"] = None if tsk is None else _plain(tsk, f"{source}['training_set_kwargs']")
    return out
