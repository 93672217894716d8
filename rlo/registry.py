"""The members of the loss family, registered once: every name list, CLI choice, label and dispatch derives from
``MEMBERS`` below (``rlo.LOSS_NAMES``, ``LossConfig`` checks, ``describe``/``parse``, ``binary_loss``,
``classification_loss``, ``get_loss``, ``GanObjective``).

Adding a member is one :class:`LossMember` entry in ``MEMBERS`` (or one :func:`register` call from outside):

- ``binary(logits, target, *, reduction, **params)``: as :func:`rlo.functional.logistic`;
- ``multiclass(logits, target, *, reduction, weight, ignore_index, label_smoothing, **params)``: as
  :func:`rlo.functional.cross_entropy`. :func:`rlo.functional.class_loss` (any per-sample loss) and
  :func:`rlo.functional.nll_class_loss` (any function of the nll) give the options, so a new member only writes
  its per-sample loss (:func:`rlo.functional.nll_binary_loss` is the binary counterpart);
- ``params``: the :class:`rlo.LossConfig` fields it takes, passed by keyword, in label order;
- ``label_always``: the params its label spells even at their default (the rooted losses always show k).

Labels: ``name``, then ``-<code><value>`` for each param in ``label_always`` or off its default, with the codes
of ``LABEL_CODES``: ``rlo-k3``, ``rlo-eq9-k3-m5``, ``focal``, ``focal-g2-a0.5``, ``focal-anone`` (alpha None).
A bare number right after the name is the first ``label_always`` param: ``rlo-5`` is an alias of ``rlo-k5``.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import functools
import re
from collections.abc import Callable, Iterator

from rlo import functional as RF

# LossConfig field -> label code. A new parameter is a LossConfig field plus its code here.
LABEL_CODES = {"k": "k", "m": "m", "gamma": "g", "alpha": "a"}
NUMBER = r"(?:\d+\.?\d*|\.\d+)(?:e[+-]?\d+)?"
TOKEN = re.compile(rf"-(?P<code>{'|'.join(LABEL_CODES.values())})(?P<value>{NUMBER}|none)(?=-|$)")
BARE_NUMBER = re.compile(rf"-({NUMBER})(?=-|$)")  # the alias rlo-5 = rlo-k5
NAME = re.compile(r"[a-z][a-z0-9]*(?:-[a-z][a-z0-9]*)*")


@dataclasses.dataclass(frozen=True)
class LossMember:
    """One member of the family: its name, its two implementations, and the parameters it takes."""

    name: str
    binary: Callable | None = None  # None: no binary form (binary_loss and GanObjective refuse it)
    multiclass: Callable | None = None  # None: no multi-class form
    params: tuple[str, ...] = ()
    label_always: tuple[str, ...] = ()
    # For members whose binary loss is a function of the nll alone: f(nll, input_dtype=..., **params) per sample,
    # so that batched callers (experiments.batched_gd) compute one nll for many models.
    from_nll: Callable | None = None
    # The binary loss a GAN generator minimises on its target 'real', when it is not `binary` itself (hinge GANs:
    # G minimises -D(G(z)), not relu(1 - D(G(z)))). Same signature as `binary`.
    generator: Callable | None = None


MEMBERS = (
    # cross-entropy -log p; binary: softplus(-y z), StyleGAN2's logistic loss
    LossMember("ce", RF.logistic, RF.cross_entropy, from_nll=lambda nll, input_dtype=None: nll),
    # focal alpha (1 - p)^gamma (-log p) (Lin et al. 2017)
    LossMember("focal", RF.binary_focal_loss, RF.focal_loss, params=("gamma", "alpha")),
    # rooted logistic, eq. 4: m p^(-1/k), m = k by default
    LossMember(
        "rlo",
        functools.partial(RF.rooted_logistic, form="eq4"),
        functools.partial(RF.rooted_cross_entropy, form="eq4"),
        params=("k", "m"),
        label_always=("k",),
        from_nll=functools.partial(RF.rooted_from_nll, form="eq4"),
    ),
    # rooted logistic, eq. 9: m (1 - p^(1/k)), bounded by m
    LossMember(
        "rlo-eq9",
        functools.partial(RF.rooted_logistic, form="eq9"),
        functools.partial(RF.rooted_cross_entropy, form="eq9"),
        params=("k", "m"),
        label_always=("k",),
        from_nll=functools.partial(RF.rooted_from_nll, form="eq9"),
    ),
    # unhinged 1 - margin (van Rooyen et al. 2015); linear, so not a function of the nll
    LossMember("unhinged", RF.binary_unhinged_loss, RF.unhinged_loss),
    # hinge relu(1 - margin) (multi-class: Crammer & Singer); in a GAN, G minimises -D(G(z)) (BigGAN)
    LossMember("hinge", RF.binary_hinge_loss, RF.hinge_loss, generator=RF.binary_linear_loss),
)

_REGISTRY: dict[str, LossMember] = {}


def register(member: LossMember) -> LossMember:
    """Add a member; its name must be new and must not read as another label (``rlo-k2``, ``focal-3``)."""
    if not isinstance(member, LossMember):
        raise TypeError(f"register takes a LossMember, got {member!r}")
    name = member.name
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise ValueError(f"loss name must be lower-case words joined by '-' (e.g. 'rlo-eq9'), got name={name!r}")
    for segment in name.split("-")[1:]:
        if TOKEN.fullmatch("-" + segment):
            raise ValueError(f"loss name {name!r}: segment {segment!r} reads as a parameter in a label")
    if name in _REGISTRY:
        raise ValueError(f"loss {name!r} is registered already")
    unknown = [p for p in member.params if p not in LABEL_CODES]
    if unknown or len(set(member.params)) != len(member.params):
        raise ValueError(
            f"loss {name!r}: params {member.params} must be distinct LossConfig fields among {tuple(LABEL_CODES)}"
        )
    if not set(member.label_always) <= set(member.params):
        raise ValueError(f"loss {name!r}: label_always {member.label_always} must be among params {member.params}")
    if member.binary is None and member.multiclass is None:
        raise ValueError(f"loss {name!r} needs a binary or a multi-class implementation")
    _REGISTRY[name] = member
    return member


def unregister(name: str) -> LossMember:
    """Remove a member (tests register and remove their own); returns it."""
    return _REGISTRY.pop(get_member(name).name)


def get_member(name: str) -> LossMember:
    """The registered member, or a ValueError listing the names."""
    member = _REGISTRY.get(name) if isinstance(name, str) else None
    if member is None:
        raise ValueError(f"unknown loss {name!r}; choose one of {', '.join(_REGISTRY)}")
    return member


def loss_names(task: str | None = None) -> tuple[str, ...]:
    """Registered names in order; ``task='binary'`` or ``'multiclass'`` keeps the members that have that form."""
    if task not in (None, "binary", "multiclass"):
        raise ValueError(f"task must be None, 'binary' or 'multiclass', got task={task!r}")
    return tuple(name for name, member in _REGISTRY.items() if task is None or getattr(member, task) is not None)


class _LiveNames(collections.abc.Sequence):
    """``LOSS_NAMES``: a tuple-like view of the registered names, read at each use, for ``click.Choice`` & co."""

    def __getitem__(self, index):
        return loss_names()[index]

    def __len__(self) -> int:
        return len(_REGISTRY)

    def __iter__(self) -> Iterator[str]:
        return iter(loss_names())

    def __contains__(self, name) -> bool:
        return isinstance(name, str) and name in _REGISTRY

    def __eq__(self, other) -> bool:
        return loss_names() == (tuple(other) if isinstance(other, (tuple, _LiveNames)) else other)

    __hash__ = None

    def __repr__(self) -> str:
        return repr(loss_names())


LOSS_NAMES = _LiveNames()

for _member in MEMBERS:
    register(_member)
