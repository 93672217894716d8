"""One typed description of a loss in the family, and the modules built from it.

Experiments, classifiers and the GAN loss all pick a loss through :class:`LossConfig`, so switching between
members is one string on the command line (``LossConfig.parse("rlo-k5")``) and nothing else. The members, their
implementations and their labels are registered in :mod:`rlo.registry`; nothing here names a member except
:class:`RootedLoss`, which maps its two forms to ``rlo`` and ``rlo-eq9``. Multi-class losses take
``nn.CrossEntropyLoss``'s options (weight, ignore_index, label_smoothing, probability targets, unbatched input)
with one rule for all members, stated and justified in :mod:`rlo.functional`.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import torch
from torch import nn

from rlo import functional as RF
from rlo import registry
from rlo.registry import LOSS_NAMES  # noqa: F401  (re-exported: the live list of registered names)

ROOTED_NAME_OF_FORM = {"eq4": "rlo", "eq9": "rlo-eq9"}


def rooted_member(form: str) -> str:
    """The member that computes a rooted form: 'eq4' -> 'rlo', 'eq9' -> 'rlo-eq9'."""
    if form not in ROOTED_NAME_OF_FORM:
        raise ValueError(f"form must be one of {tuple(ROOTED_NAME_OF_FORM)}, got form={form!r}")
    return ROOTED_NAME_OF_FORM[form]


@dataclasses.dataclass(frozen=True, eq=False)
class LossConfig:
    """A member of the loss family and its parameters: ``k``/``m`` for the rooted losses, ``gamma``/``alpha`` for
    focal. Numbers (ints, numpy scalars) are stored as floats; bools, strings and tensors are refused.

    Every field is checked whatever the member, but ``==`` and ``hash`` look only at the name and the fields the
    member takes: ``LossConfig("ce", k=2) == LossConfig("ce")`` (the same loss), which makes
    ``LossConfig.parse(c.describe()) == c`` for every config. The JSON keeps all fields, as in the
    training_options.json of earlier runs.
    """

    name: str = "ce"
    k: float = 3.0
    m: float | None = None  # None means m = k, as in eq. 4
    gamma: float = 3.0
    alpha: float | None = 0.25

    def __post_init__(self):
        registry.get_member(self.name)
        k = RF.check_k(self.k, allow_tensor=False)
        checked = dict(
            k=k,
            m=None if self.m is None else RF.resolve_m(k, self.m, allow_tensor=False),
            gamma=RF.check_gamma(self.gamma, allow_tensor=False),
            alpha=RF.check_alpha(self.alpha, allow_tensor=False),
        )
        for field, value in checked.items():
            object.__setattr__(self, field, value)

    @property
    def member(self) -> registry.LossMember:
        return registry.get_member(self.name)

    @property
    def is_rooted(self) -> bool:
        """The rooted members are the ones with a root k."""
        return "k" in self.member.params

    def parameters(self) -> dict[str, Any]:
        """The fields this member takes, as keyword arguments of its functions."""
        return {param: getattr(self, param) for param in self.member.params}

    def _key(self) -> tuple:
        params = self.member.params if self.name in registry.LOSS_NAMES else ("k", "m", "gamma", "alpha")
        return (self.name,) + tuple(getattr(self, param) for param in params)

    def __eq__(self, other) -> bool:
        if not isinstance(other, LossConfig):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def describe(self) -> str:
        """Short label for logs, plots and run-directory names, e.g. ``rlo-k2``, ``rlo-eq9-k3-m5``, ``focal-g2``;
        :meth:`parse` inverts it. Format: :mod:`rlo.registry`."""
        member = self.member
        parts = [self.name]
        for param in member.params:
            value = getattr(self, param)
            if param in member.label_always or value != _DEFAULTS[param]:
                parts.append(registry.LABEL_CODES[param] + ("none" if value is None else _format_number(value)))
        return "-".join(parts)

    @classmethod
    def parse(cls, label: str) -> LossConfig:
        """The config a label names: ``parse(c.describe()) == c``. Parameters off the label take their defaults;
        aliases: a bare number after the name is its first always-spelled parameter (``rlo-5`` = ``rlo-k5``,
        ``rlo-eq9-3`` = ``rlo-eq9-k3``). Anything else raises ValueError naming the label."""
        if not isinstance(label, str):
            raise RF.ParameterTypeError(f"a loss label must be a string, got label={label!r}")
        text = label.strip()
        names = sorted(registry.loss_names(), key=len, reverse=True)  # 'rlo-eq9-k3' is rlo-eq9's, not rlo's
        name = next((n for n in names if text == n or text.startswith(n + "-")), None)
        if name is None:
            raise ValueError(
                f"unknown loss label {label!r}; a label starts with one of "
                f"{', '.join(registry.loss_names())} (e.g. rlo-k3, rlo-eq9-k3-m5, focal-g2)"
            )
        member = registry.get_member(name)
        codes = {registry.LABEL_CODES[param]: param for param in member.params}
        rest, values = text[len(name) :], {}
        alias = registry.BARE_NUMBER.match(rest)
        if alias and member.label_always:
            values[member.label_always[0]] = float(alias.group(1))
            rest = rest[alias.end() :]
        while rest:
            token = registry.TOKEN.match(rest)
            param = codes.get(token.group("code")) if token else None
            if param is None or param in values:
                what = "a repeated" if param in values else "an unknown"
                shown = token.group(0) if token else rest
                raise ValueError(f"loss label {label!r}: {what} part {shown!r}; {name} takes {_spelling(member)}")
            value = token.group("value")
            values[param] = None if value == "none" else float(value)
            rest = rest[token.end() :]
        missing = [param for param in member.label_always if param not in values]
        if missing:
            raise ValueError(
                f"loss label {label!r} needs {', '.join(registry.LABEL_CODES[p] for p in missing)}"
                f"<value>; {name} takes {_spelling(member)}"
            )
        try:
            return cls(name, **values)
        except ValueError as err:
            raise type(err)(f"loss label {label!r}: {err}") from None

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> LossConfig:
        return cls(**json.loads(text))


_DEFAULTS = {field.name: field.default for field in dataclasses.fields(LossConfig)}


def _format_number(value: float) -> str:
    """Shortest spelling that reads back as the same float: '3', '0.25', else repr's '2.123456789'."""
    short = f"{value:g}"
    return short if float(short) == value else repr(value)


def _spelling(member: registry.LossMember) -> str:
    if not member.params:
        return "no parameters"
    return " ".join(f"-{registry.LABEL_CODES[p]}<{p}>" for p in member.params) + (
        f" ({', '.join(member.label_always)} required)" if member.label_always else ""
    )


def classification_loss(
    cfg: LossConfig,
    logits: torch.Tensor,
    target: torch.Tensor,
    reduction: str = "mean",
    *,
    weight: torch.Tensor | None = None,
    ignore_index: int = RF.IGNORE_INDEX,
    label_smoothing: float = 0.0,
) -> torch.Tensor:
    """Multi-class loss: logits [N, C, ...] (or [C]); class-index target [N, ...] or probabilities [N, C, ...];
    ``weight``, ``ignore_index``, ``label_smoothing`` as ``nn.CrossEntropyLoss`` (rlo.functional's doc)."""
    multiclass = cfg.member.multiclass
    if multiclass is None:
        raise ValueError(
            f"loss {cfg.name!r} has no multi-class form; choose one of {', '.join(registry.loss_names('multiclass'))}"
        )
    return multiclass(
        logits,
        target,
        reduction=reduction,
        weight=weight,
        ignore_index=ignore_index,
        label_smoothing=label_smoothing,
        **cfg.parameters(),
    )


def binary_loss(cfg: LossConfig, logits: torch.Tensor, target: RF.Target, reduction: str = "mean") -> torch.Tensor:
    """Binary loss on logits of any shape; target in {0, 1}, {-1, +1}, bool, of the logits' shape or one scalar."""
    binary = cfg.member.binary
    if binary is None:
        raise ValueError(
            f"loss {cfg.name!r} has no binary form; choose one of {', '.join(registry.loss_names('binary'))}"
        )
    return binary(logits, target, reduction=reduction, **cfg.parameters())


class FamilyLoss(nn.Module):
    """``nn.CrossEntropyLoss``-style module for any member of the family: ``loss(logits [N, C], target [N])``,
    with the same ``weight`` (a buffer, so it follows ``.to(device)``), ``ignore_index`` and ``label_smoothing``."""

    def __init__(
        self,
        cfg: LossConfig,
        reduction: str = "mean",
        *,
        weight: torch.Tensor | None = None,
        ignore_index: int = RF.IGNORE_INDEX,
        label_smoothing: float = 0.0,
    ):
        super().__init__()
        if not isinstance(cfg, LossConfig):
            raise TypeError(f"cfg must be a LossConfig, got cfg={cfg!r}")
        if reduction not in RF.REDUCTIONS:
            raise ValueError(f"reduction must be one of {RF.REDUCTIONS}, got reduction={reduction!r}")
        RF.check_class_options(weight, ignore_index, label_smoothing)
        if cfg.member.multiclass is None:
            raise ValueError(f"loss {cfg.name!r} has no multi-class form")
        self._cfg = cfg
        self._loss_fn, self._params = cfg.member.multiclass, cfg.parameters()  # looked up once, not per call
        self.reduction = reduction
        self.register_buffer("weight", weight)
        self.ignore_index = int(ignore_index)
        self.label_smoothing = float(label_smoothing)

    @property
    def cfg(self) -> LossConfig:
        """The member and its parameters, fixed for the module's life (another member is another module)."""
        return self._cfg

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self._loss_fn(
            logits,
            target,
            reduction=self.reduction,
            weight=self._buffers["weight"],  # not self.weight: __getattr__ below makes that a slow lookup
            ignore_index=self.ignore_index,
            label_smoothing=self.label_smoothing,
            **self._params,
        )

    def __getattr__(self, name: str) -> Any:
        """The member's own parameters as attributes: ``RootedLoss(k=3).k``, ``get_loss('focal').gamma``."""
        if name in LossConfig.__dataclass_fields__ and name != "name":
            cfg = self.__dict__.get("_cfg")
            if cfg is not None and name in cfg.member.params:
                value = getattr(cfg, name)
                return cfg.k if name == "m" and value is None else value  # m = k unless set
        return super().__getattr__(name)

    def extra_repr(self) -> str:
        params = ", ".join(f"{p}={getattr(self, p)!r}" for p in self.cfg.member.params)
        options = "" if self.ignore_index == RF.IGNORE_INDEX else f", ignore_index={self.ignore_index}"
        options += f", label_smoothing={self.label_smoothing:g}" if self.label_smoothing else ""
        return f"{self.cfg.name!r}{', ' + params if params else ''}, reduction={self.reduction!r}{options}"


class RootedLoss(FamilyLoss):
    """Drop-in for ``nn.CrossEntropyLoss``: ``RootedLoss(k=3)(logits, target)``, form 'eq4' (default) or 'eq9',
    with its ``weight``, ``ignore_index``, ``label_smoothing``, probability targets and unbatched input."""

    def __init__(
        self,
        k: float,
        m: float | None = None,
        form: str = "eq4",
        reduction: str = "mean",
        *,
        weight: torch.Tensor | None = None,
        ignore_index: int = RF.IGNORE_INDEX,
        label_smoothing: float = 0.0,
    ):
        super().__init__(
            LossConfig(name=rooted_member(form), k=k, m=m),
            reduction,
            weight=weight,
            ignore_index=ignore_index,
            label_smoothing=label_smoothing,
        )


class RootedBCEWithLogitsLoss(nn.Module):
    """Drop-in for ``nn.BCEWithLogitsLoss``: soft targets in [0, 1], ``weight`` and ``pos_weight`` (buffers, so
    they follow ``.to(device)``), the rooted form of rlo.functional.rooted_binary_cross_entropy_with_logits."""

    def __init__(
        self,
        k: float,
        m: float | None = None,
        form: str = "eq4",
        reduction: str = "mean",
        *,
        weight: torch.Tensor | None = None,
        pos_weight: torch.Tensor | None = None,
    ):
        super().__init__()
        self.cfg = LossConfig(name=rooted_member(form), k=k, m=m)  # k and m checked once, as every member's
        self.form = form
        if reduction not in RF.REDUCTIONS:
            raise ValueError(f"reduction must be one of {RF.REDUCTIONS}, got reduction={reduction!r}")
        self.reduction = reduction
        self.register_buffer("weight", weight)
        self.register_buffer("pos_weight", pos_weight)

    @property
    def k(self) -> float:
        return self.cfg.k

    @property
    def m(self) -> float:
        return self.cfg.k if self.cfg.m is None else self.cfg.m

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return RF.rooted_binary_cross_entropy_with_logits(
            logits,
            target,
            self.k,
            self.m,
            self.form,
            self.reduction,
            weight=self.weight,
            pos_weight=self.pos_weight,
        )

    def extra_repr(self) -> str:
        return f"{self.cfg.name!r}, k={self.k!r}, m={self.m!r}, reduction={self.reduction!r}"


def get_loss(
    name: str,
    reduction: str = "mean",
    *,
    weight: torch.Tensor | None = None,
    ignore_index: int = RF.IGNORE_INDEX,
    label_smoothing: float = 0.0,
    **params,
) -> FamilyLoss:
    """Build a family member by name: ``get_loss('rlo', k=3)``, ``get_loss('focal', gamma=2)``."""
    return FamilyLoss(
        LossConfig(name=name, **params),
        reduction,
        weight=weight,
        ignore_index=ignore_index,
        label_smoothing=label_smoothing,
    )
