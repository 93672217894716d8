"""Training snapshots that load without executing anything from the file, and `load_network` for both formats.

Our snapshot is one `torch.save` file (zip) holding only tensors, strings, numbers and plain containers, read back
with `torch.load(weights_only=True)`:

    {'format': 'rlo-stylegan2-snapshot', 'version': 1, 'torch_version': str,
     'networks': {'G'|'D'|'G_ema'|'augment_pipe': None | {'class_name': str, 'init_kwargs_json': str,
                                                          'state_dict': {name: Tensor}}},
     'training_set_kwargs_json': str, 'resume_state': None | dict}

A network is rebuilt from an explicit allowlist of classes (training.networks.NETWORK_CLASSES and
training.augment.AugmentPipe) with its JSON init kwargs, then its state is loaded strictly. Writes go to a temporary
file in the same folder, are fsync'ed and verified, then `os.replace`d over the target: a crash mid-write leaves
the previous snapshot intact. Official StyleGAN2-ADA pickles are read by training/official_pickle.py.
"""
from __future__ import annotations

import contextlib
import json
import os
import random
import tempfile
import zipfile
from collections.abc import Mapping
from typing import Any, BinaryIO, Callable

import numpy as np
import torch

from dnnlib import util as dnnlib_util
from training import official_pickle

SNAPSHOT_FORMAT = "rlo-stylegan2-snapshot"
SNAPSHOT_VERSION = 1
NETWORK_KEYS = ("G", "D", "G_ema", "augment_pipe")
_ZIP_MAGIC = b"PK\x03\x04"
_LEGACY_TORCH_MAGIC = bytes.fromhex("80028a0a6cfc9c46f9206aa85019")  # pickled torch.serialization.MAGIC_NUMBER


class CheckpointError(ValueError):
    """A snapshot could not be written or read; the message names the file and what is wrong."""


# ----------------------------------------------------------------------------
# The class allowlist.


def network_class(class_name: str) -> type[torch.nn.Module]:
    """Our class for an allowlisted name; imported lazily so this module stays light to import."""
    if class_name == "AugmentPipe":
        from training.augment import AugmentPipe
        return AugmentPipe
    from training.networks import NETWORK_CLASSES
    if class_name not in NETWORK_CLASSES:
        known = sorted([*NETWORK_CLASSES, "AugmentPipe"])
        raise CheckpointError(f"unknown network class {class_name!r}; allowed classes: {known}")
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


# ----------------------------------------------------------------------------
# Building a module from (class, kwargs, state) with strict, explained checks.


def _preview(keys: list[str], limit: int = 8) -> str:
    shown = ", ".join(keys[:limit])
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
    shape_errors = [f"{k}: saved {list(v.shape)} vs model {list(targets[k].shape)}"
                    for k, v in state_dict.items() if k in targets and tuple(v.shape) != tuple(targets[k].shape)]
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


def build_network(class_name: str, init_kwargs: Mapping[str, Any], state_dict: Mapping[str, torch.Tensor],
                  where: str, init_args: list | tuple = ()) -> torch.nn.Module:
    """Construct an allowlisted class from kwargs and load its state strictly; eval mode, no grads, on CPU."""
    try:
        cls = network_class(class_name)
    except CheckpointError as exc:
        raise CheckpointError(f"{where}: {exc}") from None
    try:
        module = cls(*init_args, **init_kwargs)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{where}: cannot construct {class_name} from saved kwargs {dict(init_kwargs)}: {exc}") \
            from exc
    load_state_strict(module, state_dict, where)
    return module.eval().requires_grad_(False)


# ----------------------------------------------------------------------------
# Atomic writes.


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], None],
                 verify: Callable[[str], None] | None = None) -> None:
    """Write a file all-or-nothing: `write(f)` into a temp file beside `path`, fsync, `verify(tmp)`, os.replace.

    On any error (or a kill) before the replace, `path` keeps its previous content; the temp file is removed
    on errors (a hard kill can leave a hidden '.<name>.*.tmp' beside it, never a damaged `path`).
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        if verify is not None:
            verify(tmp)
        os.chmod(tmp, (os.stat(path).st_mode & 0o777) if os.path.exists(path) else 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):  # persist the rename itself; not possible on every platform
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


# ----------------------------------------------------------------------------
# RNG state as weights-only-loadable data.


def capture_rng_state() -> dict[str, Any]:
    """Python, numpy and torch (CPU, and CUDA when initialised) RNG states as tensors and plain values."""
    py_version, py_words, py_gauss = random.getstate()
    np_state = np.random.get_state(legacy=False)
    state: dict[str, Any] = {
        "python": {"version": py_version, "words": torch.tensor(py_words, dtype=torch.int64), "gauss": py_gauss},
        "numpy": {"bit_generator": np_state["bit_generator"],
                  "key": torch.from_numpy(np_state["state"]["key"].astype(np.int64)),
                  "pos": int(np_state["state"]["pos"]), "has_gauss": int(np_state["has_gauss"]),
                  "gauss": float(np_state["gauss"])},
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
    np.random.set_state({"bit_generator": npy["bit_generator"],
                         "state": {"key": npy["key"].numpy().astype(np.uint32), "pos": int(npy["pos"])},
                         "has_gauss": int(npy["has_gauss"]), "gauss": float(npy["gauss"])})
    torch.set_rng_state(state["torch"].cpu().to(torch.uint8))
    if "cuda" in state and torch.cuda.is_available():
        cuda_states = state["cuda"][: torch.cuda.device_count()]
        torch.cuda.set_rng_state_all([s.to(torch.uint8) for s in cuda_states])


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
    raise CheckpointError(f"{where} is a {type(value).__module__}.{type(value).__name__}; a snapshot stores only "
                          f"tensors, numbers, strings, None and dict/list/tuple of them{hint}")


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
    return {"class_name": class_name, "init_kwargs_json": _json_text(dict(init_kwargs), f"{where}.init_kwargs"),
            "state_dict": state}


def _check_zip_integrity(path: str) -> None:
    """torch.load does not check the zip CRCs, so a flipped bit would load silently as wrong weights."""
    try:
        with zipfile.ZipFile(path) as archive:
            bad_member = archive.testzip()
    except (zipfile.BadZipFile, EOFError, OSError) as exc:
        raise CheckpointError(f"{path} is truncated or corrupt and cannot be read as a snapshot ({exc})") from None
    if bad_member is not None:
        raise CheckpointError(f"{path} is corrupt: archive member {bad_member!r} fails its CRC check")


def _verify_snapshot_file(path: str) -> None:
    _check_zip_integrity(path)
    payload = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    if not isinstance(payload, dict) or payload.get("format") != SNAPSHOT_FORMAT:
        raise CheckpointError(f"snapshot written to {path} did not read back")
    del payload


def save_snapshot(path: str | os.PathLike, networks: Mapping[str, torch.nn.Module | None],
                  training_set_kwargs: Mapping[str, Any] | None = None,
                  resume_state: Mapping[str, Any] | None = None) -> None:
    """Atomically write a snapshot of `networks` (e.g. {'G', 'D', 'G_ema', 'augment_pipe'}; None allowed).

    resume_state: optional training state (optimizer state_dicts, augment p, counters, capture_rng_state()) made
    of tensors, numbers, strings, None and dict/list/tuple; anything else is refused before writing.
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
        "training_set_kwargs_json": _json_text(None if training_set_kwargs is None else dict(training_set_kwargs),
                                               "training_set_kwargs"),
        "resume_state": None if resume_state is None else _plain_tree(dict(resume_state), "resume_state"),
    }
    atomic_write(path, lambda f: torch.save(payload, f), verify=_verify_snapshot_file)


# ----------------------------------------------------------------------------
# Loading.


def _read_snapshot_payload(path: str) -> dict[str, Any]:
    _check_zip_integrity(path)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        text = str(exc)
        if "Weights only load failed" in text or "Unsupported global" in text:
            raise CheckpointError(
                f"{path} holds pickled Python objects beyond tensors and plain data, which are never executed "
                f"here; it is not an rlo-stylegan2 snapshot ({text.splitlines()[0]})") from None
        raise CheckpointError(f"{path} is truncated or corrupt and cannot be read as a snapshot "
                              f"({type(exc).__name__}: {text.splitlines()[0] if text else ''})") from None
    if not isinstance(payload, dict) or payload.get("format") != SNAPSHOT_FORMAT:
        keys = sorted(map(str, payload))[:8] if isinstance(payload, dict) else type(payload).__name__
        raise CheckpointError(f"{path} is a torch.save file but not an rlo-stylegan2 snapshot (found {keys})")
    version = payload.get("version")
    if not isinstance(version, int) or version > SNAPSHOT_VERSION:
        raise CheckpointError(f"{path} has snapshot version {version!r}; this code reads up to {SNAPSHOT_VERSION}")
    return payload


def _load_our_snapshot(path: str) -> dict[str, Any]:
    payload = _read_snapshot_payload(path)
    out: dict[str, Any] = {}
    networks = payload.get("networks") or {}
    for name, entry in networks.items():
        where = f"{path}[{name!r}]"
        if entry is None:
            out[name] = None
            continue
        try:
            init_kwargs = json.loads(entry["init_kwargs_json"])
            class_name, state_dict = entry["class_name"], entry["state_dict"]
        except (KeyError, TypeError, json.JSONDecodeError) as exc:
            raise CheckpointError(f"{where} is malformed ({type(exc).__name__}: {exc})") from None
        out[name] = build_network(class_name, init_kwargs, state_dict, where)
    out["training_set_kwargs"] = json.loads(payload.get("training_set_kwargs_json") or "null")
    if payload.get("resume_state") is not None:
        out["resume_state"] = payload["resume_state"]
    return out


def _load_official_pickle(path: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            parsed = official_pickle.parse_official_snapshot(f, source=path)
    except official_pickle.OfficialPickleError as exc:
        message = str(exc)
        raise CheckpointError(message if path in message else f"{path}: {message}") from exc
    out: dict[str, Any] = {}
    for name in official_pickle.OFFICIAL_NETWORK_KEYS:
        net = parsed[name]
        if net is None:
            out[name] = None
            continue
        where = f"{path}[{name!r}]"
        if net.class_name not in ("Generator", "Discriminator", "AugmentPipe"):
            raise CheckpointError(f"{where} is a persistent {net.class_name!r}; only Generator, Discriminator and "
                                  f"AugmentPipe can be imported")
        out[name] = build_network(net.class_name, net.init_kwargs, net.state_dict, where, init_args=net.init_args)
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
    raise CheckpointError(f"{path} is neither an rlo-stylegan2 snapshot (.pt zip) nor a StyleGAN2-ADA pickle "
                          f"(starts with {head[:8]!r})")


def load_network(path_or_url: str | os.PathLike, device: str | torch.device = "cpu") -> dict[str, Any]:
    """Load our snapshot or an official StyleGAN2-ADA .pkl (by content, not extension); never runs file code.

    Returns {'G', 'D', 'G_ema', 'augment_pipe': nn.Module (eval, requires_grad False, on `device`) or None,
    'training_set_kwargs': dict or None} plus 'resume_state' (CPU tensors) when the snapshot has one.
    A URL is only looked up in the local cache (dnnlib.util.resolve_path), never downloaded.
    """
    path = dnnlib_util.resolve_path(os.fspath(path_or_url))
    if os.path.isdir(path):
        raise CheckpointError(f"{path} is a directory; pass a snapshot file")
    data = _load_our_snapshot(path) if snapshot_kind(path) == "snapshot" else _load_official_pickle(path)
    for name in NETWORK_KEYS:
        data.setdefault(name, None)
    data.setdefault("training_set_kwargs", None)
    for name, value in data.items():
        if isinstance(value, torch.nn.Module):
            data[name] = value.to(device)
    return data
