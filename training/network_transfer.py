"""What a resume file's networks mean for a new run: which constructor kwargs it fixes, and which tensors carry over.

Resuming our own snapshot continues that run, so its networks must fit the run exactly; fine-tuning an official
pickle builds the networks from the pickle's own kwargs (not from --cfg), where the official code also lets the
resolution, channel count or label dimension follow the new dataset and copies the tensors whose names and shapes
agree. Everything here works before the run directory exists, so a misfit is refused with one line.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Mapping
from typing import Any

import torch

# Constructor kwargs that change no parameter shape. The run's own (precision, memory layout, trainability) follow the
# device and the run's flags; the function's (what the networks compute: the minibatch-stddev group, the
# activation clamp) come from an official pickle unless a flag says otherwise.
RUN_KEYS = frozenset({"num_fp16_res", "fp16_channels_last", "freeze_layers"})
FUNCTION_KEYS = frozenset({"conv_clamp", "mbstd_group_size"})
SHAPE_FREE_KEYS = RUN_KEYS | FUNCTION_KEYS
# The kwargs a dataset decides; a fine-tuned official network follows the dataset in these.
DATASET_KEYS = ("img_resolution", "img_channels", "c_dim")


def flatten_kwargs(kwargs: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{'synthesis_kwargs': {'channel_base': 1024}} -> {'synthesis_kwargs.channel_base': 1024}."""
    flat: dict[str, Any] = {}
    for key, value in kwargs.items():
        if isinstance(value, Mapping):
            flat.update(flatten_kwargs(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = list(value) if isinstance(value, tuple) else value
    return flat


def shape_differences(saved: Mapping[str, Any], wanted: Mapping[str, Any]) -> dict[str, tuple[Any, Any]]:
    """{flat key: (saved, wanted)} for every kwarg that changes a parameter shape."""
    flat_saved, flat_wanted = flatten_kwargs(saved), flatten_kwargs(wanted)
    diffs = {}
    for key in sorted(set(flat_saved) | set(flat_wanted)):
        if key.rsplit(".", 1)[-1] in SHAPE_FREE_KEYS:
            continue
        a, b = flat_saved.get(key), flat_wanted.get(key)
        if a != b:
            diffs[key] = (a, b)
    return diffs


def describe_differences(diffs: Mapping[str, tuple[Any, Any]]) -> str:
    """'img_resolution 32 vs 64, synthesis_kwargs.channel_base 1024 vs 16384' (saved first)."""
    return ", ".join(f"{key} {a} vs {b}" for key, (a, b) in diffs.items())


def with_shape_free_from(
    saved: Mapping[str, Any], run: Mapping[str, Any], keys: frozenset[str] = SHAPE_FREE_KEYS
) -> dict[str, Any]:
    """`saved` with the shape-free kwargs `keys` of `run` (present or absent there) applied."""
    out = copy.deepcopy(dict(saved))

    def merge(dst: dict[str, Any], src: Mapping[str, Any]) -> None:
        for key in list(dst):
            if key in keys and key not in src:
                del dst[key]
        for key, value in src.items():
            if key in keys:
                dst[key] = copy.deepcopy(value)
            elif isinstance(value, Mapping):
                dst.setdefault(key, {})
                if isinstance(dst[key], dict):
                    merge(dst[key], value)

    merge(out, run)
    return out


def fine_tune_kwargs(
    saved: Mapping[str, Any], run: Mapping[str, Any], given: frozenset[str] = frozenset()
) -> dict[str, Any]:
    """An official network's kwargs for a new dataset: its architecture and function (FUNCTION_KEYS, but those in
    `given`, which a flag set, come from `run`), the run's dataset shape, precision, layout and freezing."""
    out = with_shape_free_from(saved, run, RUN_KEYS | (FUNCTION_KEYS & given))
    for key in DATASET_KEYS:
        if key in run:
            out[key] = run[key]
    return out


def kwarg_changes(saved: Mapping[str, Any], used: Mapping[str, Any]) -> dict[str, tuple[Any, Any]]:
    """{flat key: (saved, used)} for every kwarg the run builds differently from the file ('unset': absent, the
    constructor's default)."""
    flat_saved, flat_used = flatten_kwargs(saved), flatten_kwargs(used)
    changes = {}
    for key in sorted(set(flat_saved) | set(flat_used)):
        before, after = flat_saved.get(key, "unset"), flat_used.get(key, "unset")
        if before != after:
            changes[key] = (before, after)
    return changes


@dataclasses.dataclass
class TransferPlan:
    """Which tensors of a destination network a source network fills (names as in named_parameters/buffers)."""

    copied: list[str]
    fresh: list[str]  # only in the destination: left at their initialisation
    unused: list[str]  # only in the source
    mismatched: list[str]  # in both, shapes differ: 'name (source) vs (destination)'

    @property
    def complete(self) -> bool:
        return not (self.fresh or self.unused or self.mismatched)


def _tensors(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return dict(list(module.named_parameters()) + list(module.named_buffers()))


def transfer_plan(src: torch.nn.Module, dst: torch.nn.Module) -> TransferPlan:
    src_tensors, dst_tensors = _tensors(src), _tensors(dst)
    copied, fresh, mismatched = [], [], []
    for name, tensor in dst_tensors.items():
        if name not in src_tensors:
            fresh.append(name)
        elif src_tensors[name].shape != tensor.shape:
            mismatched.append(f"{name} {tuple(src_tensors[name].shape)} vs {tuple(tensor.shape)}")
        else:
            copied.append(name)
    unused = [name for name in src_tensors if name not in dst_tensors]
    return TransferPlan(copied=copied, fresh=fresh, unused=unused, mismatched=mismatched)


def preview(names: list[str], limit: int = 6) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f", ... ({len(names)} in all)" if len(names) > limit else "")
