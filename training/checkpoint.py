"""Training snapshots that load without executing anything from the file, and `load_network` for both formats.

Our snapshot is one `torch.save` file (zip) holding only tensors, strings, numbers and plain containers, read back
with `torch.load(weights_only=True)`:

    {'format': 'rlo-stylegan2-snapshot', 'version': 2, 'torch_version': str,
     'networks': {'G'|'D'|'G_ema'|'augment_pipe': None | {'class_name': str, 'init_kwargs_json': str,
                                                          'state_dict': {name: Tensor}}},
     'training_set_kwargs_json': str, 'resume_state': None | dict,
     'digests': {'algorithm': 'sha256', 'structure': hex, 'tensors': {path: hex}}}

Integrity: every tensor (networks and resume_state alike) has a sha256 digest of its dtype, shape and bytes, keyed
by its path in the payload (e.g. "['networks']['G']['state_dict']['mapping.fc0.weight']"), and 'structure' digests
everything else (the payload with each tensor replaced by a marker). Loading checks them against what torch
actually read, so a damaged file loads identical tensors or raises CheckpointError; the zip CRCs alone miss
damage that makes torch read other bytes than the ones checked. Version-1 snapshots (no digests) still load, with
a one-line warning, checked by their zip CRCs only.

A network is rebuilt from an explicit allowlist of classes (training.networks.NETWORK_CLASSES and
training.augment.AugmentPipe) with its JSON init kwargs, bounded by training/network_bounds.py before anything is
allocated, then its state is loaded strictly. Writes go to a temporary file in the same folder, are fsync'ed and
verified, then renamed over the target (or, with overwrite=False, linked to it only if it does not exist): a crash
mid-write leaves the previous snapshot intact. Official StyleGAN2-ADA pickles are read by
training/official_pickle.py.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import inspect
import json
import os
import random
import re
import sys
import zipfile
from collections.abc import Callable, Mapping
from typing import Any, BinaryIO

import numpy as np
import torch

from dnnlib import files
from dnnlib import util as dnnlib_util
from training import network_bounds, official_pickle
from training.augment import AugmentPipe
from training.networks import NETWORK_CLASSES
from training.official_pickle import one_line, short_repr

SNAPSHOT_FORMAT = "rlo-stylegan2-snapshot"
SNAPSHOT_VERSION = 2  # 2: tensor and structure digests
DIGEST_ALGORITHM = "sha256"
NETWORK_KEYS = ("G", "D", "G_ema", "augment_pipe")
MAX_PAYLOAD_DEPTH = 32  # containers inside containers in a snapshot payload (ours nest about 6 deep)
_ZIP_MAGIC = b"PK\x03\x04"
_LEGACY_TORCH_MAGIC = bytes.fromhex("80028a0a6cfc9c46f9206aa85019")  # pickled torch.serialization.MAGIC_NUMBER
_TENSOR_RECORD = re.compile(r"^[^/]+/data/\d+$")  # torch.save's zip member for one storage
_EXPLAIN_BY_BUILDING = 2**26  # elements: below this a state/kwargs mismatch is explained key by key


class CheckpointError(ValueError):
    """A snapshot could not be written or read; the message (one line) names the file and what is wrong."""

    def __init__(self, message: Any):
        super().__init__(one_line(message))


class _TooDeep(CheckpointError):
    """A payload nests containers deeper than MAX_PAYLOAD_DEPTH."""


# ----------------------------------------------------------------------------
# The class allowlist.


def network_class(class_name: str) -> type[torch.nn.Module]:
    """Our class for an allowlisted name."""
    if class_name == "AugmentPipe":
        return AugmentPipe
    if class_name not in NETWORK_CLASSES:
        known = sorted([*NETWORK_CLASSES, "AugmentPipe"])
        raise CheckpointError(f"unknown network class {short_repr(class_name)}; allowed classes: {known}")
    return NETWORK_CLASSES[class_name]


def _class_name_of(module: torch.nn.Module, where: str) -> str:
    name = type(module).__name__
    try:
        allowed = network_class(name)
    except CheckpointError:
        allowed = None
    if allowed is not type(module):
        hint = " (unwrap DistributedDataParallel: pass .module)" if hasattr(module, "module") else ""
        raise CheckpointError(f"{where} is a {type(module).__module__}.{name}, not an allowlisted network class{hint}")
    return name


def describe_kwargs_mismatch(
    saved_kwargs: Mapping[str, Any], run_kwargs: Mapping[str, Any], class_name: str | None = None
) -> str:
    """One line naming the fields in which a file's init kwargs and a run's differ ('' if none); see
    training.network_bounds.describe_kwargs_mismatch (class_name fills in the defaults of omitted kwargs)."""
    return network_bounds.describe_kwargs_mismatch(saved_kwargs, run_kwargs, class_name)


# ----------------------------------------------------------------------------
# Building a module from (class, kwargs, state) with strict, explained checks.


def _preview(keys: list[str], limit: int = 8) -> str:
    shown = ", ".join(one_line(k, 80) for k in keys[:limit])
    return f"[{shown}{', ...' if len(keys) > limit else ''}] ({len(keys)})"


def load_state_strict(module: torch.nn.Module, state_dict: Mapping[str, torch.Tensor], where: str) -> None:
    """Copy `state_dict` into `module`; every key and shape must match, else CheckpointError naming them.

    Saved buffers that our module keeps non-persistent (rebuilt by the constructor) are accepted and copied too.
    """
    expected = module.state_dict()
    non_persistent = {name: buf for name, buf in module.named_buffers() if name not in expected}
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected and k not in non_persistent]
    targets = {**expected, **non_persistent}
    shape_errors = [
        f"{k}: saved {list(v.shape)} vs model {list(targets[k].shape)}"
        for k, v in state_dict.items()
        if k in targets and tuple(v.shape) != tuple(targets[k].shape)
    ]
    if missing or unexpected or shape_errors:
        parts = []
        if missing:
            parts.append(f"missing keys {_preview(missing)}")
        if unexpected:
            parts.append(f"unexpected keys {_preview(unexpected)}")
        if shape_errors:
            parts.append(f"shape mismatches {_preview(shape_errors)}")
        raise CheckpointError(f"{where} ({type(module).__name__}) does not match its saved state: " + "; ".join(parts))
    module.load_state_dict({k: v for k, v in state_dict.items() if k in expected}, strict=True)
    with torch.no_grad():
        for k, buf in non_persistent.items():
            if k in state_dict:
                buf.copy_(state_dict[k])


def _checked_kwargs(
    class_name: str, init_kwargs: Any, where: str, init_args: list | tuple = ()
) -> tuple[dict[str, Any], int | None]:
    """The kwargs to construct `class_name` with (positional init_args bound to their names) and the element count
    they build, checked against training/network_bounds.py: CheckpointError naming `where`, key and value."""
    try:
        cls = network_class(class_name)
    except CheckpointError as exc:
        raise CheckpointError(f"{where}: {exc}") from None
    if not isinstance(init_kwargs, Mapping):
        raise CheckpointError(f"{where}: {class_name} init kwargs are a {type(init_kwargs).__name__}, not a dict")
    try:
        bound = inspect.signature(cls.__init__).bind(None, *init_args, **dict(init_kwargs)).arguments
    except TypeError as exc:
        raise CheckpointError(
            f"{where}: cannot construct {class_name} from the saved arguments "
            f"{short_repr(list(init_args))} / {short_repr(dict(init_kwargs))}: {exc}"
        ) from None
    kwargs = {k: v for k, v in bound.items() if k != "self"}
    try:
        return kwargs, network_bounds.check_init_kwargs(class_name, kwargs, where)
    except network_bounds.KwargsError as exc:
        raise CheckpointError(str(exc)) from None


def build_network(
    class_name: str,
    init_kwargs: Mapping[str, Any],
    state_dict: Mapping[str, torch.Tensor],
    where: str,
    init_args: list | tuple = (),
) -> torch.nn.Module:
    """Construct an allowlisted class from bounded kwargs and load its state strictly; eval, no grads, on CPU.

    Nothing is allocated before the kwargs pass training/network_bounds.py; a network whose saved state holds a
    different number of elements than its kwargs describe is refused before it is built, unless it is small
    enough to build and name the mismatching keys.
    """
    kwargs, expected = _checked_kwargs(class_name, init_kwargs, where, init_args)
    return _build(class_name, kwargs, expected, state_dict, where)


def _build(
    class_name: str, kwargs: dict[str, Any], expected: int | None, state_dict: Mapping[str, torch.Tensor], where: str
) -> torch.nn.Module:
    cls = network_class(class_name)
    saved = sum(t.numel() for t in state_dict.values())
    if expected is not None and saved != expected and expected > _EXPLAIN_BY_BUILDING:
        raise CheckpointError(
            f"{where} ({class_name}): the saved state holds {saved:,} elements but its kwargs "
            f"describe a network of {expected:,}; refusing to build it"
        )
    try:
        module = cls(**kwargs)
    except (TypeError, ValueError, ZeroDivisionError, RuntimeError) as exc:
        raise CheckpointError(
            f"{where}: cannot construct {class_name} from saved kwargs {short_repr(kwargs)}: {exc}"
        ) from None
    load_state_strict(module, state_dict, where)
    return module.eval().requires_grad_(False)


# ----------------------------------------------------------------------------
# Atomic writes.


def _atomic_write(
    path: str | os.PathLike,
    write: Callable[[BinaryIO], None],
    verify: Callable[[str], None] | None = None,
    *,
    overwrite: bool = True,
    size_hint: int | None = None,
) -> None:
    """dnnlib.files.atomic_write (the repository's one durable writer) for snapshots, its errors as one-line
    CheckpointErrors."""
    try:
        files.atomic_write(path, write, verify, overwrite=overwrite, size_hint=size_hint)
    except files.FileWriteError as exc:
        raise CheckpointError(str(exc)) from None


# ----------------------------------------------------------------------------
# RNG state as weights-only-loadable data.


def capture_rng_state() -> dict[str, Any]:
    """Python, numpy and torch (CPU, and CUDA when initialised) RNG states as tensors and plain values."""
    py_version, py_words, py_gauss = random.getstate()
    np_state = np.random.get_state(legacy=False)
    state: dict[str, Any] = {
        "python": {"version": py_version, "words": torch.tensor(py_words, dtype=torch.int64), "gauss": py_gauss},
        "numpy": {
            "bit_generator": np_state["bit_generator"],
            "key": torch.from_numpy(np_state["state"]["key"].astype(np.int64)),
            "pos": int(np_state["state"]["pos"]),
            "has_gauss": int(np_state["has_gauss"]),
            "gauss": float(np_state["gauss"]),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = [s.cpu() for s in torch.cuda.get_rng_state_all()]
    return state


def restore_rng_state(state: Mapping[str, Any]) -> None:
    """Inverse of capture_rng_state (CUDA states are restored when present and the devices exist)."""
    py = state["python"]
    random.setstate((int(py["version"]), tuple(int(w) for w in py["words"].tolist()), py["gauss"]))
    npy = state["numpy"]
    np.random.set_state(
        {
            "bit_generator": npy["bit_generator"],
            "state": {"key": npy["key"].numpy().astype(np.uint32), "pos": int(npy["pos"])},
            "has_gauss": int(npy["has_gauss"]),
            "gauss": float(npy["gauss"]),
        }
    )
    torch.set_rng_state(state["torch"].cpu().to(torch.uint8))
    if "cuda" in state and torch.cuda.is_available():
        cuda_states = state["cuda"][: torch.cuda.device_count()]
        torch.cuda.set_rng_state_all([s.to(torch.uint8) for s in cuda_states])


# ----------------------------------------------------------------------------
# Digests.


def _walk(tree: Any, path: str, tensors: dict[str, torch.Tensor], parts: list[str], depth: int) -> None:
    """Collect the tensors of `tree` by path, and its text with every tensor replaced by a marker."""
    if depth > MAX_PAYLOAD_DEPTH:
        raise _TooDeep(f"{one_line(path, 120)} nests containers more than {MAX_PAYLOAD_DEPTH} deep")
    if isinstance(tree, torch.Tensor):
        tensors[path] = tree
        parts.append("<tensor>")
    elif isinstance(tree, dict):
        parts.append("{")
        for key, value in tree.items():
            parts.append(f"{key!r}:")
            _walk(value, f"{path}[{key!r}]", tensors, parts, depth + 1)
            parts.append(",")
        parts.append("}")
    elif isinstance(tree, (list, tuple)):
        parts.append("[" if isinstance(tree, list) else "(")
        for i, value in enumerate(tree):
            _walk(value, f"{path}[{i}]", tensors, parts, depth + 1)
            parts.append(",")
        parts.append("]" if isinstance(tree, list) else ")")
    else:
        parts.append(repr(tree))


def _tensor_digest(tensor: torch.Tensor) -> str:
    """sha256 of dtype, shape and the bytes in logical (row-major) order, whatever the strides."""
    t = tensor.detach().cpu().resolve_conj().resolve_neg().contiguous()
    digest = hashlib.sha256(f"{t.dtype}{list(t.shape)}".encode())
    if t.numel():
        digest.update(t.reshape(-1).view(torch.uint8).numpy())  # hashlib releases the GIL: threads hash in parallel
    return digest.hexdigest()


def _digest_all(tensors: Mapping[str, torch.Tensor]) -> dict[str, str]:
    total = sum(t.numel() * t.element_size() for t in tensors.values())
    workers = min(8, os.cpu_count() or 1)
    if total < 2**24 or workers == 1:
        return {path: _tensor_digest(t) for path, t in tensors.items()}
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        futures = {path: pool.submit(_tensor_digest, t) for path, t in tensors.items()}
        return {path: future.result() for path, future in futures.items()}


def tensor_digests(payload: Mapping[str, Any]) -> dict[str, Any]:
    """The 'digests' entry of a snapshot payload: sha256 of every tensor by path, and of the rest ('structure')."""
    tensors: dict[str, torch.Tensor] = {}
    parts: list[str] = []
    _walk({k: v for k, v in payload.items() if k != "digests"}, "", tensors, parts, 0)
    return {
        "algorithm": DIGEST_ALGORITHM,
        "structure": hashlib.sha256("".join(parts).encode()).hexdigest(),
        "tensors": _digest_all(tensors),
    }


def _verify_digests(payload: dict[str, Any], path: str) -> None:
    saved = payload.get("digests")
    if not (
        isinstance(saved, dict)
        and saved.get("algorithm") == DIGEST_ALGORITHM
        and isinstance(saved.get("structure"), str)
        and isinstance(saved.get("tensors"), dict)
    ):
        raise CheckpointError(f"{path} is corrupt: its digests are missing or malformed")
    actual = tensor_digests(payload)
    if actual["structure"] != saved["structure"]:
        raise CheckpointError(f"{path} is corrupt: its non-tensor content (kwargs, counters, names) fails its digest")
    missing = [p for p in saved["tensors"] if p not in actual["tensors"]]
    extra = [p for p in actual["tensors"] if p not in saved["tensors"]]
    if missing or extra:
        raise CheckpointError(
            f"{path} is corrupt: tensors {_preview(missing or extra, 3)} "
            f"{'are missing' if missing else 'have no digest'}"
        )
    bad = [p for p, d in actual["tensors"].items() if d != saved["tensors"][p]]
    if bad:
        raise CheckpointError(
            f"{path} is corrupt: tensor {one_line(bad[0], 200)} fails its {DIGEST_ALGORITHM} digest"
            + (f" (and {len(bad) - 1} more)" if len(bad) > 1 else "")
        )


# ----------------------------------------------------------------------------
# Saving.


def _plain_tree(value: Any, where: str) -> Any:
    """Copy of resume_state with tensors on CPU; refuses anything torch.load(weights_only=True) cannot read."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", copy=True)
    if isinstance(value, Mapping):
        out = {}
        for k, v in value.items():
            if not isinstance(k, (str, int)) or isinstance(k, bool):
                raise CheckpointError(f"{where} has a key {k!r} of type {type(k).__name__}; use str or int keys")
            out[k] = _plain_tree(v, f"{where}[{k!r}]")
        return out
    if isinstance(value, (list, tuple)):
        items = [_plain_tree(v, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if isinstance(value, tuple) else items
    hint = " (convert numpy arrays with torch.from_numpy)" if isinstance(value, (np.ndarray, np.generic)) else ""
    raise CheckpointError(
        f"{where} is a {type(value).__module__}.{type(value).__name__}; a snapshot stores only "
        f"tensors, numbers, strings, None and dict/list/tuple of them{hint}"
    )


def _json_text(value: Any, where: str) -> str:
    try:
        return json.dumps(value, sort_keys=True)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{where} must be JSON-serialisable: {exc}") from None


def _network_entry(name: str, module: torch.nn.Module) -> dict[str, Any]:
    where = f"networks[{name!r}]"
    class_name = _class_name_of(module, where)
    init_kwargs = getattr(module, "init_kwargs", None)
    if not isinstance(init_kwargs, Mapping):
        raise CheckpointError(f"{where} ({class_name}) has no init_kwargs dict to rebuild it from")
    state = {k: v.detach().to("cpu", copy=True) for k, v in module.state_dict().items()}
    return {
        "class_name": class_name,
        "init_kwargs_json": _json_text(dict(init_kwargs), f"{where}.init_kwargs"),
        "state_dict": state,
    }


def _payload_bytes(payload: Mapping[str, Any]) -> int:
    tensors: dict[str, torch.Tensor] = {}
    _walk(dict(payload), "", tensors, [], 0)
    return sum(t.numel() * t.element_size() for t in tensors.values())


def _write_payload(path: str, payload: dict[str, Any], overwrite: bool) -> None:
    payload["digests"] = tensor_digests(payload)
    _atomic_write(
        path,
        lambda f: torch.save(payload, f),
        verify=_verify_snapshot_file,
        overwrite=overwrite,
        size_hint=_payload_bytes(payload) + 2**20,
    )


def save_snapshot(
    path: str | os.PathLike,
    networks: Mapping[str, torch.nn.Module | None],
    training_set_kwargs: Mapping[str, Any] | None = None,
    resume_state: Mapping[str, Any] | None = None,
    *,
    overwrite: bool = False,
) -> None:
    """Atomically write a snapshot of `networks` (e.g. {'G', 'D', 'G_ema', 'augment_pipe'}; None allowed).

    resume_state: optional training state (optimizer state_dicts, augment p, counters, capture_rng_state()) made
    of tensors, numbers, strings, None and dict/list/tuple; anything else is refused before writing.
    overwrite=False refuses (CheckpointError) to replace an existing file, atomically. The written file is read
    back and its digests checked before it takes the name `path`.
    """
    entries: dict[str, Any] = {}
    for name, module in networks.items():
        if not isinstance(name, str):
            raise CheckpointError(f"network names must be strings, got {name!r}")
        if module is not None and not isinstance(module, torch.nn.Module):
            raise CheckpointError(f"networks[{name!r}] is a {type(module).__name__}, not a torch.nn.Module")
        entries[name] = None if module is None else _network_entry(name, module)
    payload = {
        "format": SNAPSHOT_FORMAT,
        "version": SNAPSHOT_VERSION,
        "torch_version": str(torch.__version__),
        "networks": entries,
        "training_set_kwargs_json": _json_text(
            None if training_set_kwargs is None else dict(training_set_kwargs), "training_set_kwargs"
        ),
        "resume_state": None if resume_state is None else _plain_tree(dict(resume_state), "resume_state"),
    }
    path = os.fspath(path)
    if not overwrite and os.path.lexists(path):
        raise CheckpointError(str(files.refuse_existing(path)))  # before serialising hundreds of MB
    _write_payload(path, payload, overwrite)


# ----------------------------------------------------------------------------
# Loading.


def _check_zip_members(path: str, tensors_too: bool) -> None:
    """CRC-check the archive's members (the small ones only, when digests cover the tensor records)."""
    try:
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                if tensors_too or not _TENSOR_RECORD.match(info.filename):
                    with archive.open(info) as member:
                        while member.read(2**24):
                            pass
    except zipfile.BadZipFile as exc:
        if "CRC" in str(exc):
            raise CheckpointError(f"{path} is corrupt: an archive member fails its CRC check ({exc})") from None
        raise CheckpointError(f"{path} is truncated or corrupt and cannot be read as a snapshot ({exc})") from None
    except Exception as exc:  # zipfile raises many types on damaged archives (Unicode, NotImplemented, ...)
        raise CheckpointError(
            f"{path} is truncated or corrupt and cannot be read as a snapshot ({type(exc).__name__}: {exc})"
        ) from None


def _torch_load(path: str) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as exc:  # torch raises UnpicklingError/RuntimeError/... variants: all mean "not readable"
        text = str(exc)
        if "Weights only load failed" in text or "Unsupported global" in text:
            raise CheckpointError(
                f"{path} holds pickled Python objects beyond tensors and plain data, which are never executed "
                f"here; it is not an rlo-stylegan2 snapshot ({text.splitlines()[0]})"
            ) from None
        raise CheckpointError(
            f"{path} is truncated or corrupt and cannot be read as a snapshot "
            f"({type(exc).__name__}: {text.splitlines()[0] if text else ''})"
        ) from None


def _read_snapshot_payload(path: str) -> dict[str, Any]:
    """The verified payload (tensors may be memory-mapped from `path`); warns once for a version-1 file."""
    _check_zip_members(path, tensors_too=False)
    payload = _torch_load(path)
    if not isinstance(payload, dict) or payload.get("format") != SNAPSHOT_FORMAT:
        keys = sorted(map(short_repr, payload))[:8] if isinstance(payload, dict) else type(payload).__name__
        raise CheckpointError(f"{path} is a torch.save file but not an rlo-stylegan2 snapshot (found {keys})")
    version = payload.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or not 1 <= version <= SNAPSHOT_VERSION:
        raise CheckpointError(
            f"{path} has snapshot version {short_repr(version)}; this code reads 1 to {SNAPSHOT_VERSION}"
        )
    try:
        if version >= 2:
            _verify_digests(payload, path)
        else:
            _check_zip_members(path, tensors_too=True)
            _walk(payload, "", {}, [], 0)  # the nesting bound that digest verification applies to version 2
    except _TooDeep as exc:
        raise CheckpointError(f"{path} is malformed: {exc}") from None
    if version == 1:
        print(
            f"Warning: {path} is a version-1 snapshot without digests (damage its zip CRCs miss goes undetected); "
            f"save it again with save_snapshot to add them",
            file=sys.stderr,
        )
    _check_schema(payload, path)
    return payload


def _check_schema(payload: dict[str, Any], path: str) -> None:
    """The payload's layout, so that later code never meets a value of an unexpected type."""
    networks = payload.get("networks")
    if not isinstance(networks, dict):
        raise CheckpointError(f"{path} is malformed: 'networks' is a {type(networks).__name__}, not a dict")
    for name, entry in networks.items():
        where = f"{path}[{short_repr(name, 40)}]"
        if not isinstance(name, str):
            raise CheckpointError(f"{where} is malformed: network names must be strings")
        if entry is None:
            continue
        if not (
            isinstance(entry, dict)
            and isinstance(entry.get("class_name"), str)
            and isinstance(entry.get("init_kwargs_json"), str)
            and isinstance(entry.get("state_dict"), dict)
        ):
            raise CheckpointError(f"{where} is malformed: expected class_name, init_kwargs_json and state_dict")
        bad = next(
            (k for k, v in entry["state_dict"].items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)),
            None,
        )
        if bad is not None:
            raise CheckpointError(f"{where} is malformed: state_dict entry {short_repr(bad, 60)} is not a named tensor")
    if not isinstance(payload.get("training_set_kwargs_json"), (str, type(None))):
        raise CheckpointError(f"{path} is malformed: training_set_kwargs_json is not a string")
    if not isinstance(payload.get("resume_state"), (dict, type(None))):
        raise CheckpointError(f"{path} is malformed: resume_state is not a dict")


def _json_value(text: str | None, where: str) -> Any:
    try:
        return json.loads(text or "null")
    except (ValueError, RecursionError) as exc:
        raise CheckpointError(f"{where} is malformed ({type(exc).__name__}: {exc})") from None


def _is_optimizer_state(value: Any) -> bool:
    """A torch.optim.Optimizer.state_dict(): {'state': ..., 'param_groups': ...}."""
    return isinstance(value, Mapping) and set(value) == {"state", "param_groups"}


def _copied(tree: Any) -> Any:
    """`tree` with every tensor copied into memory (no longer mapped from the file)."""
    if isinstance(tree, torch.Tensor):
        return tree.clone()
    if isinstance(tree, dict):
        return {k: _copied(v) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        items = [_copied(v) for v in tree]
        return tuple(items) if isinstance(tree, tuple) else items
    return tree


def _load_our_snapshot(path: str) -> dict[str, Any]:
    payload = _read_snapshot_payload(path)
    out: dict[str, Any] = {"init_kwargs": {}}
    for name, entry in payload["networks"].items():
        where = f"{path}[{name!r}]"
        if entry is None:
            out[name] = out["init_kwargs"][name] = None
            continue
        init_kwargs = _json_value(entry["init_kwargs_json"], f"{where} init_kwargs_json")
        kwargs, expected = _checked_kwargs(entry["class_name"], init_kwargs, where)
        out[name] = _build(entry["class_name"], kwargs, expected, entry["state_dict"], where)
        out["init_kwargs"][name] = kwargs
    training_set_kwargs = _json_value(payload.get("training_set_kwargs_json"), f"{path} training_set_kwargs_json")
    if not isinstance(training_set_kwargs, (dict, type(None))):
        raise CheckpointError(f"{path} is malformed: training_set_kwargs is a {type(training_set_kwargs).__name__}")
    out["training_set_kwargs"] = training_set_kwargs
    resume_state = payload.get("resume_state")
    out["has_optimizer_state"] = resume_state is not None and any(map(_is_optimizer_state, resume_state.values()))
    if resume_state is not None:
        out["resume_state"] = _copied(resume_state)
    return out


def _load_official_pickle(path: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            parsed = official_pickle.parse_official_snapshot(f, source=path)
    except official_pickle.OfficialPickleError as exc:
        message = str(exc)
        raise CheckpointError(message if path in message else f"{path}: {message}") from None
    out: dict[str, Any] = {"init_kwargs": {}, "has_optimizer_state": False}
    for name in official_pickle.OFFICIAL_NETWORK_KEYS:
        net = parsed[name]
        if net is None:
            out[name] = out["init_kwargs"][name] = None
            continue
        where = f"{path}[{name!r}]"
        if net.class_name not in ("Generator", "Discriminator", "AugmentPipe"):
            raise CheckpointError(
                f"{where} is a persistent {short_repr(net.class_name)}; only Generator, "
                f"Discriminator and AugmentPipe can be imported"
            )
        kwargs, expected = _checked_kwargs(net.class_name, net.init_kwargs, where, init_args=net.init_args)
        out[name] = _build(net.class_name, kwargs, expected, net.state_dict, where)
        out["init_kwargs"][name] = kwargs
    out["training_set_kwargs"] = parsed["training_set_kwargs"]
    return out


def snapshot_kind(path: str) -> str:
    """'snapshot' (ours, a torch zip) or 'official' (a pickle), decided from the file's first bytes."""
    with open(path, "rb") as f:
        head = f.read(len(_LEGACY_TORCH_MAGIC))
    if not head:
        raise CheckpointError(f"{path} is empty")
    if head.startswith(_ZIP_MAGIC):
        return "snapshot"
    if head == _LEGACY_TORCH_MAGIC:
        raise CheckpointError(f"{path} is a legacy (pre-zip) torch.save file, not a snapshot or StyleGAN2-ADA pickle")
    if head[0] == 0x80:
        return "official"
    raise CheckpointError(
        f"{path} is neither an rlo-stylegan2 snapshot (.pt zip) nor a StyleGAN2-ADA pickle (starts with {head[:8]!r})"
    )


def load_network(path_or_url: str | os.PathLike, device: str | torch.device = "cpu") -> dict[str, Any]:
    """Load our snapshot or an official StyleGAN2-ADA .pkl (by content, not extension); never runs file code.

    Returns {'G', 'D', 'G_ema', 'augment_pipe': nn.Module (eval, requires_grad False, on `device`) or None,
    'training_set_kwargs': dict or None,
    'init_kwargs': {name: the kwargs each network was built with, as stored (official pickles omit defaults)
                    or None},
    'has_optimizer_state': bool (resume_state holds optimizer state_dicts)}
    plus 'resume_state' (CPU tensors) when the snapshot has one. A damaged or hostile file raises CheckpointError
    (one line, naming the file); a URL is only looked up in the local cache (dnnlib.util.resolve_path), never
    downloaded (FileNotFoundError when not cached).
    """
    path = dnnlib_util.resolve_path(os.fspath(path_or_url))
    if os.path.isdir(path):
        raise CheckpointError(f"{path} is a directory; pass a snapshot file")
    try:
        data = _load_our_snapshot(path) if snapshot_kind(path) == "snapshot" else _load_official_pickle(path)
    except (CheckpointError, FileNotFoundError):
        raise
    except (
        OSError,
        RuntimeError,
        ValueError,
        TypeError,
        KeyError,
        IndexError,
        AttributeError,
        OverflowError,
        MemoryError,
        RecursionError,
        NotImplementedError,
    ) as exc:
        # Every known damage has its own message above; this keeps an unforeseen one to one line, too.
        raise CheckpointError(f"{path} cannot be loaded ({type(exc).__name__}: {exc})") from None
    for name in NETWORK_KEYS:
        data.setdefault(name, None)
        data["init_kwargs"].setdefault(name, None)
    data.setdefault("training_set_kwargs", None)
    for name, value in data.items():
        if isinstance(value, torch.nn.Module):
            data[name] = value.to(device)
    return data


# ----------------------------------------------------------------------------
# Maintenance of written snapshots.


def _verify_snapshot_file(path: str) -> None:
    payload = _read_snapshot_payload(path)
    del payload


def strip_optimizer_state(path: str | os.PathLike) -> int:
    """Rewrite the snapshot at `path` (atomically, digests renewed) without the optimizer state_dicts in its
    resume_state (training_loop's 'G_opt' and 'D_opt': Adam moments, ~2/3 of a full snapshot); every other entry
    stays. Returns the bytes saved (0, file untouched, when it holds no optimizer state)."""
    path = os.fspath(path)
    if snapshot_kind(path) != "snapshot":
        raise CheckpointError(f"{path} is not an rlo-stylegan2 snapshot; only those hold optimizer state")
    payload = _read_snapshot_payload(path)
    resume_state = payload.get("resume_state")
    if resume_state is None or not any(map(_is_optimizer_state, resume_state.values())):
        return 0
    payload = _copied({k: v for k, v in payload.items() if k != "digests"})  # unmapped: the file is replaced
    payload["resume_state"] = {k: v for k, v in payload["resume_state"].items() if not _is_optimizer_state(v)}
    payload["version"] = SNAPSHOT_VERSION
    before = os.path.getsize(path)
    _write_payload(path, payload, overwrite=True)
    return before - os.path.getsize(path)
