"""Bounds on the constructor kwargs of a network read from a file, checked before anything is built.

A snapshot or official pickle names an allowlisted class and the kwargs to build it with. Unchecked, a hostile
file cannot run code but can exhaust memory or CPU: z_dim=4e6 allocates 2.5 GB, 2**40 fails deep in the allocator.
`check_init_kwargs` accepts only the kwargs the constructors take, read from their signatures (nested dicts such as
synthesis_kwargs included), each with a type and range from `BOUNDS`, and computes from the kwargs alone the exact
number of parameter and buffer elements the network will hold. Above MAX_NETWORK_ELEMENTS it refuses.

`effective_kwargs` fills in the signature defaults and `describe_kwargs_mismatch` names the fields in which two
kwargs dicts differ, e.g. an official pickle's and a training run's.
"""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Callable, Mapping
from typing import Any

from torch_utils.ops import bias_act
from training import augment, networks
from training.official_pickle import short_repr

MAX_NETWORK_ELEMENTS = 2_000_000_000  # parameters + buffers of one network: 8 GB of float32
PRIORITY_FIELDS = ("img_resolution", "img_channels", "c_dim", "z_dim", "w_dim")


class KwargsError(ValueError):
    """Constructor kwargs from a file are unknown, out of bounds, or describe too large a network."""


# ----------------------------------------------------------------------------
# Which kwargs each class takes: its signature, and for the dicts it forwards, the signatures of the classes
# they reach minus the arguments the forwarding class passes itself.

_FORWARDED: dict[tuple[str, str], tuple[tuple[type, frozenset[str]], ...]] = {
    ("Generator", "mapping_kwargs"): ((networks.MappingNetwork, frozenset({"z_dim", "c_dim", "w_dim", "num_ws"})),),
    ("Generator", "synthesis_kwargs"): (
        (networks.SynthesisNetwork, frozenset({"w_dim", "img_resolution", "img_channels"})),
        (
            networks.SynthesisBlock,
            frozenset({"in_channels", "out_channels", "w_dim", "resolution", "img_channels", "is_last", "use_fp16"}),
        ),
        (
            networks.SynthesisLayer,
            frozenset(
                {
                    "in_channels",
                    "out_channels",
                    "w_dim",
                    "resolution",
                    "up",
                    "resample_filter",
                    "conv_clamp",
                    "channels_last",
                }
            ),
        ),
    ),
    ("Discriminator", "block_kwargs"): (
        (
            networks.DiscriminatorBlock,
            frozenset(
                {
                    "in_channels",
                    "tmp_channels",
                    "out_channels",
                    "resolution",
                    "img_channels",
                    "first_layer_idx",
                    "architecture",
                    "use_fp16",
                    "conv_clamp",
                }
            ),
        ),
    ),
    ("Discriminator", "mapping_kwargs"): (
        (networks.MappingNetwork, frozenset({"z_dim", "c_dim", "w_dim", "num_ws", "w_avg_beta"})),
    ),
    ("Discriminator", "epilogue_kwargs"): (
        (
            networks.DiscriminatorEpilogue,
            frozenset({"in_channels", "cmap_dim", "resolution", "img_channels", "architecture", "conv_clamp"}),
        ),
    ),
}
CLASSES: dict[str, type] = {
    "Generator": networks.Generator,
    "Discriminator": networks.Discriminator,
    "AugmentPipe": augment.AugmentPipe,
}


def _parameters(cls: type, exclude: frozenset[str] = frozenset()) -> dict[str, inspect.Parameter]:
    params = inspect.signature(cls.__init__).parameters
    return {
        name: p
        for name, p in params.items()
        if name != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL) and name not in exclude
    }


@functools.cache
def accepted_kwargs(class_name: str, nested: str | None = None) -> dict[str, inspect.Parameter]:
    """The kwargs `class_name` takes (nested=None) or its dict kwarg `nested` takes, with their defaults
    (a shared dict: do not modify)."""
    if nested is None:
        return _parameters(CLASSES[class_name])
    out: dict[str, inspect.Parameter] = {}
    for cls, exclude in _FORWARDED[(class_name, nested)]:
        out.update(_parameters(cls, exclude))
    return out


# ----------------------------------------------------------------------------
# Types and ranges, by kwarg name.

Bound = tuple[Callable[[Any], bool], str]


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_real(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _int(lo: int, hi: int, optional: bool = False, power_of_two: bool = False, odd: bool = False) -> Bound:
    def check(v: Any) -> bool:
        if v is None:
            return optional
        return _is_int(v) and lo <= v <= hi and (not power_of_two or v & (v - 1) == 0) and (not odd or v % 2 == 1)

    kind = "an odd integer" if odd else "a power of two" if power_of_two else "an integer"
    return check, f"{kind} in [{lo}, {hi}]" + (" or None" if optional else "")


def _real(lo: float, hi: float, optional: bool = False, above_lo: bool = False) -> Bound:
    def check(v: Any) -> bool:
        if v is None:
            return optional
        return _is_real(v) and (lo < v if above_lo else lo <= v) and v <= hi

    return check, f"a number in {'(' if above_lo else '['}{lo:g}, {hi:g}]" + (" or None" if optional else "")


def _choice(*options: str) -> Bound:
    return (lambda v: isinstance(v, str) and v in options), f"one of {list(options)}"


def _taps(max_taps: int) -> Bound:
    def check(v: Any) -> bool:
        return isinstance(v, (list, tuple)) and 1 <= len(v) <= max_taps and all(_is_real(t) for t in v) and sum(v) != 0

    return check, f"a list of 1 to {max_taps} finite filter taps with a non-zero sum"


def _reals(length: int, lo: float, hi: float) -> Bound:
    def check(v: Any) -> bool:
        return isinstance(v, (list, tuple)) and len(v) == length and all(_is_real(t) and lo <= t <= hi for t in v)

    return check, f"a list of {length} numbers in [{lo:g}, {hi:g}]"


_BOOL: Bound = (lambda v: isinstance(v, bool)), "true or false"
_DIM = 2**14

BOUNDS: dict[str, Bound] = {
    "z_dim": _int(0, _DIM),
    "c_dim": _int(0, 2**16),
    "w_dim": _int(1, _DIM),
    "img_resolution": _int(4, 2**14, power_of_two=True),
    "img_channels": _int(1, 64),
    "channel_base": _int(1, 2**24),
    "channel_max": _int(1, _DIM),
    "num_fp16_res": _int(0, 16),
    "conv_clamp": _real(0, 1e9, optional=True, above_lo=True),
    "cmap_dim": _int(1, _DIM, optional=True),
    "architecture": _choice(*networks.ARCHITECTURES),
    "activation": _choice(*bias_act.activation_funcs),
    "num_layers": _int(1, 64),
    "embed_features": _int(1, _DIM, optional=True),
    "layer_features": _int(1, _DIM, optional=True),
    "lr_multiplier": _real(0, 1e3, above_lo=True),
    "w_avg_beta": _real(0, 1, optional=True),
    "resample_filter": _taps(16),
    "fp16_channels_last": _BOOL,
    "kernel_size": _int(1, 15, odd=True),
    "use_noise": _BOOL,
    "freeze_layers": _int(0, 1024),
    "mbstd_group_size": _int(1, 2**16, optional=True),
    "mbstd_num_channels": _int(0, 64),
    "mapping_kwargs": None,
    "synthesis_kwargs": None,
    "block_kwargs": None,
    "epilogue_kwargs": None,  # dicts
}
# AugmentPipe: probabilities and magnitudes (every kwarg but one is a number >= 0), and the band strengths.
_AUGMENT_NUMBER = _real(0, 1e6)
_AUGMENT_BANDS = _reals(4, 0, 1e6)


def _bound(class_name: str, key: str) -> Bound | None:
    if class_name == "AugmentPipe":
        return _AUGMENT_BANDS if key == "imgfilter_bands" else _AUGMENT_NUMBER
    return BOUNDS.get(key)


# ----------------------------------------------------------------------------
# Checking.


def _check_fields(class_name: str, kwargs: Any, nested: str | None, where: str) -> None:
    label = f"{class_name} {nested}" if nested else f"{class_name} kwargs"
    if not isinstance(kwargs, Mapping):
        raise KwargsError(f"{where}: {label} is a {type(kwargs).__name__}, not a dict")
    accepted = accepted_kwargs(class_name, nested)
    for key, value in kwargs.items():
        name = f"{nested}.{key}" if nested else key
        if not isinstance(key, str) or key not in accepted:
            known = ", ".join(sorted(accepted))
            raise KwargsError(
                f"{where}: cannot construct {class_name}: unknown kwarg {short_repr(name, 60)} "
                f"(= {short_repr(value, 60)}); {label} takes {known}"
            )
        if nested is None and (class_name, key) in _FORWARDED:
            if value is not None:
                _check_fields(class_name, value, key, where)
            continue
        bound = _bound(class_name, key)
        if bound is None:
            raise KwargsError(f"{where}: {class_name} kwarg {name} has no bound in training/network_bounds.py")
        check, expected = bound
        if not check(value):
            raise KwargsError(
                f"{where}: {class_name} kwarg {name}={short_repr(value, 60)} is out of bounds; expected {expected}"
            )
    if nested is None:
        missing = [k for k, p in accepted.items() if p.default is p.empty and k not in kwargs]
        if missing:
            raise KwargsError(f"{where}: cannot construct {class_name}: missing kwargs {missing}")


def effective_kwargs(class_name: str, kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """`kwargs` with every omitted kwarg (nested dicts included) set to its signature default."""
    out: dict[str, Any] = {}
    for key, param in accepted_kwargs(class_name).items():
        value = kwargs.get(key, None if param.default is param.empty else param.default)
        if (class_name, key) in _FORWARDED:
            value = dict(value or {})
            for sub, sub_param in accepted_kwargs(class_name, key).items():
                if sub not in value and sub_param.default is not sub_param.empty:
                    value[sub] = sub_param.default
        out[key] = list(value) if isinstance(value, tuple) else value
    out.update({k: v for k, v in kwargs.items() if k not in out})
    for value in out.values():
        if isinstance(value, dict):
            for sub, item in value.items():
                if isinstance(item, tuple):
                    value[sub] = list(item)
    return out


def check_init_kwargs(class_name: str, kwargs: Mapping[str, Any], where: str) -> int | None:
    """Refuse (KwargsError naming `where`, the key and the value) kwargs that are unknown, out of bounds or
    build more than MAX_NETWORK_ELEMENTS; return the element count the network will hold (None: AugmentPipe,
    whose size does not depend on its kwargs)."""
    if class_name not in CLASSES:
        raise KwargsError(f"{where}: unknown network class {short_repr(class_name)}; allowed: {sorted(CLASSES)}")
    _check_fields(class_name, kwargs, None, where)
    if class_name == "AugmentPipe":
        return None
    k = effective_kwargs(class_name, kwargs)
    base, res = (k["synthesis_kwargs"] if class_name == "Generator" else k)["channel_base"], k["img_resolution"]
    if base // res < 1:
        raise KwargsError(
            f"{where}: {class_name} channel_base={base} gives 0 channels at img_resolution={res}; "
            f"expected channel_base >= {res}"
        )
    count = count_elements(class_name, k)
    if count > MAX_NETWORK_ELEMENTS:
        raise KwargsError(
            f"{where}: {class_name} kwargs describe {count:,} parameter and buffer elements, more than "
            f"the limit of {MAX_NETWORK_ELEMENTS:,} (MAX_NETWORK_ELEMENTS in "
            f"training/network_bounds.py); refusing to build it"
        )
    return count


# ----------------------------------------------------------------------------
# The element count, mirroring the constructors in training/networks.py (tests compare it with built networks).


def _filter(taps: list) -> int:
    return len(taps) if len(taps) >= 8 else len(taps) ** 2  # upfirdn2d.setup_filter: separable from 8 taps


def _fc(n_in: int, n_out: int, bias: bool = True) -> int:
    return n_in * n_out + (n_out if bias else 0)


def _conv(n_in: int, n_out: int, kernel: int, taps: list, bias: bool = True) -> int:
    return n_out * n_in * kernel * kernel + (n_out if bias else 0) + _filter(taps)


def _mapping(z_dim: int, c_dim: int, w_dim: int, has_w_avg: bool, m: Mapping[str, Any]) -> int:
    embed = 0 if c_dim == 0 else (w_dim if m["embed_features"] is None else m["embed_features"])
    layer = w_dim if m["layer_features"] is None else m["layer_features"]
    features = [z_dim + embed] + [layer] * (m["num_layers"] - 1) + [w_dim]
    count = _fc(c_dim, embed) if c_dim > 0 else 0
    count += sum(_fc(features[i], features[i + 1]) for i in range(m["num_layers"]))
    return count + (w_dim if has_w_avg else 0)


def count_elements(class_name: str, kwargs: Mapping[str, Any]) -> int:
    """Parameter + buffer elements of Generator / Discriminator(**kwargs); kwargs as from effective_kwargs.

    Layers that are not handed the block's resample_filter (SynthesisBlock.conv1, DiscriminatorBlock.fromrgb and
    conv0, the epilogue) keep a buffer of the default filter.
    """
    res, channels_out = kwargs["img_resolution"], kwargs["img_channels"]
    log2 = int(math.log2(res))
    fir = list(networks.FIR_FILTER)
    if class_name == "Generator":
        s, w = kwargs["synthesis_kwargs"], kwargs["w_dim"]
        taps, kernel = list(s["resample_filter"]), s["kernel_size"]

        def ch(r: int) -> int:
            return min(s["channel_base"] // r, s["channel_max"])

        def layer(n_in: int, n_out: int, r: int, layer_taps: list) -> int:
            noise = r * r + 1 if s["use_noise"] else 0
            return _filter(layer_taps) + _fc(w, n_in) + n_out * n_in * kernel * kernel + noise + n_out

        count = 0
        for r in (2**i for i in range(2, log2 + 1)):
            n_in, n_out = (ch(r // 2) if r > 4 else 0), ch(r)
            count += _filter(taps) + (n_out * r * r if n_in == 0 else layer(n_in, n_out, r, taps))
            count += layer(n_out, n_out, r, fir)
            if r == res or s["architecture"] == "skip":
                count += _fc(w, n_out) + channels_out * n_out + channels_out
            if n_in != 0 and s["architecture"] == "resnet":
                count += _conv(n_in, n_out, 1, taps, bias=False)
        m = kwargs["mapping_kwargs"]
        return count + _mapping(kwargs["z_dim"], kwargs["c_dim"], w, m["w_avg_beta"] is not None, m)

    b, e, arch = kwargs["block_kwargs"], kwargs["epilogue_kwargs"], kwargs["architecture"]
    taps = list(b["resample_filter"])

    def ch(r: int) -> int:
        return min(kwargs["channel_base"] // r, kwargs["channel_max"])

    count = 0
    for r in (2**i for i in range(log2, 2, -1)):
        n_in, tmp, n_out = (ch(r) if r < res else 0), ch(r), ch(r // 2)
        count += _filter(taps)
        if n_in == 0 or arch == "skip":
            count += _conv(channels_out, tmp, 1, fir)
        count += _conv(tmp, tmp, 3, fir) + _conv(tmp, n_out, 3, taps)
        if arch == "resnet":
            count += _conv(tmp, n_out, 1, taps, bias=False)
    c4 = ch(4)
    cmap = 0 if kwargs["c_dim"] == 0 else (c4 if kwargs["cmap_dim"] is None else kwargs["cmap_dim"])
    if kwargs["c_dim"] > 0:
        count += _mapping(0, kwargs["c_dim"], cmap, False, kwargs["mapping_kwargs"])
    if arch == "skip":
        count += _conv(channels_out, c4, 1, fir)
    count += _conv(c4 + e["mbstd_num_channels"], c4, 3, fir)
    return count + _fc(c4 * 16, c4) + _fc(c4, 1 if cmap == 0 else cmap)


# ----------------------------------------------------------------------------
# Comparing two sets of kwargs.


def _flat(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(_flat(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: list(value) if isinstance(value, tuple) else value}


def describe_kwargs_mismatch(
    saved_kwargs: Mapping[str, Any], run_kwargs: Mapping[str, Any], class_name: str | None = None
) -> str:
    """One line naming the fields in which two kwargs dicts differ ('' if none), resolution, channels and
    dimensions first, e.g. "img_resolution 256 (saved) vs 512 (run); synthesis_kwargs.channel_base 16384 vs
    32768". With class_name ('Generator', 'Discriminator', 'AugmentPipe'), omitted kwargs count as their
    defaults, so {} and {'architecture': 'resnet'} agree for a Discriminator."""
    if class_name is not None:
        saved_kwargs, run_kwargs = effective_kwargs(class_name, saved_kwargs), effective_kwargs(class_name, run_kwargs)
    saved, run = _flat(saved_kwargs), _flat(run_kwargs)
    keys = sorted(
        set(saved) | set(run),
        key=lambda k: (PRIORITY_FIELDS.index(k) if k in PRIORITY_FIELDS else len(PRIORITY_FIELDS), k),
    )
    absent = "<absent>"
    parts = []
    for key in keys:
        a, b = saved.get(key, absent), run.get(key, absent)
        if a != b or type(a) is not type(b) and not (_is_real(a) and _is_real(b)):
            suffix = (" (saved)", " (run)") if not parts else ("", "")
            parts.append(
                f"{key} {short_repr(a, 40) if a is not absent else absent}{suffix[0]} vs "
                f"{short_repr(b, 40) if b is not absent else absent}{suffix[1]}"
            )
    return "; ".join(parts)
