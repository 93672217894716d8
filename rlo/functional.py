"""The loss family as functions of logits: cross-entropy, rooted logistic (eq. 4 and eq. 9), focal, unhinged.

Every loss here is written through the per-sample negative log-likelihood ``nll = -log p`` (p = probability of
the true class), computed with softplus / log-softmax, so nothing ever forms ``(1 + exp(-z)) ** (1/k)``.

Rooted forms (arXiv 2310.03890), with ``m`` defaulting to ``k``:

- ``eq4``: ``m * p**(-1/k) = m * exp(nll / k)``. Gradient = CE gradient * (m/k) * p**(-1/k): hard examples weigh
  more. Convex in the logit margin for every k > 0. ``loss - m -> nll`` as k -> inf (error ~ nll**2 / (2k)).
- ``eq9``: ``m * (1 - p**(1/k)) = -m * expm1(-nll / k)``. Bounded by m. Gradient = CE gradient * (m/k) * p**(1/k).

Overflow policy for eq4. ``exp(nll / k)`` overflows for confidently wrong samples (nll ~ 1e4, k ~ 1). Past a cap
``t_max`` on the exponent ``t = nll / k`` the loss continues along its tangent line,
``m * exp(t_max) * (1 + t - t_max)``: value and gradient stay continuous (C^1), the loss stays convex, and the
gradient wrt each logit is bounded by ``(m/k) * exp(t_max)``. The cap is chosen so that this bound is at most a
quarter of the largest finite number of the *input's* dtype (so float16 gradients stay finite) and at most
``exp(50)`` (so values and sums stay finite in float32); see :func:`eq4_exponent_cap`. Below the cap the loss is
eq. 4 exactly. Losses are computed and returned in float32 (float64 for float64 input), as autocast does for
losses; gradients flow back in the input's dtype.

Binary targets are 0/1, -1/+1 or bool, with exactly the logits' shape, or one Python scalar / 0-d tensor for
all samples. No other broadcasting: a target [N, 1] against logits [N] would silently pair every logit with every
target, so it raises (write ``target.expand_as(logits)`` to broadcast on purpose).

Multi-class options, with ``nn.CrossEntropyLoss``'s meaning, one rule for every member. The target is class
indices [N, d1, ...] (a 0-d index for unbatched logits [C]) or class probabilities q with the logits' shape.
``label_smoothing`` eps replaces q by ``(1 - eps) q + eps / C`` (q = one-hot for indices); ``weight`` w [C] and
``ignore_index`` turn each sample's target into class weights ``a_j = w_j q_j`` (a = 0 when ignored). Then

- the sample weighs ``s = sum_j a_j`` and its nll is ``H = -sum_j a_j log p_j / s``, the cross-entropy of the
  label distribution a / s (for an index target without smoothing: s = w_y and H = -log p_y);
- the members that are functions of the nll (ce, rlo, rlo-eq9, focal) give ``s * f(H)``: ``s * H`` for ce,
  ``s * m * exp(H / k)`` for eq. 4, ``s * m * (1 - exp(-H / k))`` for eq. 9; unhinged, linear in the label, gives
  ``sum_j a_j * loss_j``, its expected loss under the label;
- 'mean' divides the sum by ``sum_n w_{y_n}`` over the samples not ignored for index targets, and by the number
  of samples for probability targets. An all-ignored batch gives nan (0/0) with zero gradients.

Why this rule: for ce, ``s * H = -sum_j w_j q_j log p_j`` is torch's per-sample loss in every combination, and
the mean is torch's, so ``ce`` *is* ``nn.CrossEntropyLoss``. A class weight on an index target is a sample weight
outside the root (``w_y * m * p**(-1/k)``), not a change of k or m. A soft or smoothed target is rooted as a
whole, ``m * exp(H(q, p) / k)``, so ``(loss - m * s) * k / m`` tends to torch's cross-entropy as k -> inf for every
option, as it does for hard labels; rooting each class term instead (``sum_j q_j m p_j**(-1/k)``) would make the
eps / C smoothing mass on unlikely classes grow like ``p_j**(-1/k)`` and dominate the loss.
"""

from __future__ import annotations

import functools
import math
import numbers
from collections.abc import Callable

import torch
import torch.nn.functional as F

from rlo import fused

Target = torch.Tensor | int | float | bool
Scalar = float | torch.Tensor

REDUCTIONS = ("mean", "sum", "none")
ROOTED_FORMS = ("eq4", "eq9")
EQ4_EXPONENT_CAP_MAX = 50.0
IGNORE_INDEX = -100  # nn.CrossEntropyLoss's default


# ----------------------------------------------------------------------------------------------------------------
# Argument checks.


class ParameterTypeError(TypeError, ValueError):
    """A loss parameter of the wrong type (``k=True``, ``k="2"``). Also a ValueError, which callers already catch
    for bad parameters."""


def is_real_number(value) -> bool:
    """int, float and numpy scalars; not bool (``k=True`` is a slip, not 1) and not strings."""
    if type(value) is float or type(value) is int:  # the common case, without the abc instance check
        return True
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _check_real(value, name: str, requirement: str, ok: Callable, allow_tensor: bool = True) -> Scalar:
    """A real number, or a real tensor (one value per model, broadcast against the samples), meeting ``ok``."""
    if torch.is_tensor(value):
        if not allow_tensor:
            raise ParameterTypeError(
                f"{name} must be a number here, got a tensor {name}={value!r}; tensors of "
                f"{name} go to the functions of rlo.functional"
            )
        if value.dtype == torch.bool or value.is_complex():
            raise ParameterTypeError(f"{name} must hold real numbers, got a tensor of dtype {value.dtype}")
        if not value.dtype.is_floating_point:
            value = value.double()
        good = ok(value)
        if not torch.compiler.is_compiling() and value.numel() and not bool(good.all()):  # host read: eager only
            raise ValueError(f"{name} must hold {requirement}, found {name}={value[~good].flatten()[:5].tolist()}")
        return value
    if not is_real_number(value):
        raise ParameterTypeError(
            f"{name} must be a number ({requirement}), got {name}={value!r} of type {type(value).__name__}"
        )
    number = float(value)
    if not ok(number):
        raise ValueError(f"{name} must be {requirement}, got {name}={value!r}")
    return number


def _positive(x):
    return (abs(x) < math.inf) & (x > 0)


def check_k(k: Scalar, allow_tensor: bool = True) -> Scalar:
    """k must be finite and positive (a number, or a tensor of them); the rooted loss is undefined otherwise."""
    return _check_real(k, "k", "a positive finite number", _positive, allow_tensor)


def resolve_m(k: Scalar, m: Scalar | None, allow_tensor: bool = True) -> Scalar:
    """The paper's multiplier m; eq. 4 uses m = k, which makes the gradient scale exactly p**(-1/k)."""
    if m is None:
        return k
    return _check_real(m, "m", "a positive finite number (or None for m = k)", _positive, allow_tensor)


def check_gamma(gamma: Scalar, allow_tensor: bool = True) -> Scalar:
    """Focal's exponent: a finite number >= 0 (0 gives back cross-entropy)."""
    return _check_real(gamma, "gamma", "a finite number >= 0", lambda x: (abs(x) < math.inf) & (x >= 0), allow_tensor)


def check_alpha(alpha: Scalar | None, allow_tensor: bool = True) -> Scalar | None:
    """Focal's weight: a number in [0, 1], or None for no weight."""
    if alpha is None:
        return None
    return _check_real(alpha, "alpha", "a number in [0, 1] (or None)", lambda x: (x >= 0) & (x <= 1), allow_tensor)


def _check_reduction(reduction: str) -> None:
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got reduction={reduction!r}")


def _check_form(form: str) -> None:
    if form not in ROOTED_FORMS:
        raise ValueError(f"form must be one of {ROOTED_FORMS}, got form={form!r}")


def check_class_options(weight: torch.Tensor | None, ignore_index: int, label_smoothing: float) -> None:
    """The options of ``nn.CrossEntropyLoss``; the weight's length is checked against C at the call."""
    if weight is not None:
        if not torch.is_tensor(weight) or not weight.dtype.is_floating_point or weight.ndim != 1:
            raise ParameterTypeError(
                f"weight must be a 1-D floating tensor of class weights [C] (or None), got weight={weight!r}"
            )
        if not torch.compiler.is_compiling() and not bool((torch.isfinite(weight) & (weight >= 0)).all()):
            raise ValueError(f"weight must hold finite numbers >= 0, got weight={weight.tolist()}")
    if not isinstance(ignore_index, numbers.Integral) or isinstance(ignore_index, bool):
        raise ParameterTypeError(f"ignore_index must be an int, got ignore_index={ignore_index!r}")
    _check_real(
        label_smoothing, "label_smoothing", "a number in [0, 1]", lambda x: (x >= 0) & (x <= 1), allow_tensor=False
    )


def _reduce(loss: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    return loss


def _compute_dtype(logits: torch.Tensor) -> torch.dtype:
    return torch.float64 if logits.dtype == torch.float64 else torch.float32


# ----------------------------------------------------------------------------------------------------------------
# Negative log-likelihoods: the one place where probabilities meet logits.


def binary_sign(target: Target, like: torch.Tensor) -> torch.Tensor:
    """Map binary targets in {0, 1}, {-1, +1} or bool to signs in {-1, +1} with the dtype of ``like``.

    A tensor target must have ``like``'s shape exactly, or be 0-d.
    """
    if not torch.is_tensor(target):
        if not isinstance(target, numbers.Real) or target not in (0, 1, -1):
            raise ValueError(f"binary target must be 0, 1, -1, +1 or bool, got target={target!r}")
        return torch.full((), 1.0 if target > 0 else -1.0, dtype=like.dtype, device=like.device)
    if target.ndim and target.shape != like.shape:
        raise ValueError(
            f"binary target shape {tuple(target.shape)} does not match logits shape "
            f"{tuple(like.shape)}; give a target of the logits' shape, or one scalar for all"
        )
    if target.dtype == torch.bool:
        return target.to(like.dtype) * 2 - 1
    if not torch.compiler.is_compiling():  # host reads: eager mode only (compiled: no sync, no graph break)
        valid = (target == 0) | (target == 1) | (target == -1)
        if not bool(valid.all()):
            bad = target[~valid].flatten()[:5].tolist()
            raise ValueError(f"binary target must hold only 0/1 or -1/+1, found values {bad}")
        if bool((target == -1).any()) and bool((target == 0).any()):
            raise ValueError("binary target mixes 0 and -1: use {0, 1} or {-1, +1}, not both")
    return torch.where(target > 0, 1.0, -1.0).to(dtype=like.dtype, device=like.device)


def binary_nll(logits: torch.Tensor, target: Target) -> torch.Tensor:
    """-log sigmoid(y * z) = softplus(-y * z) per sample, in float32 (float64 for float64 input)."""
    z = logits.to(_compute_dtype(logits))
    return F.softplus(-binary_sign(target, z) * z)


class ClassTargets:
    """A multi-class target as class weights ``a[n, j] = w_j * q_nj`` (0 for ignored samples); see the module doc.

    Index targets without smoothing stay sparse (index y and sample weight w_y), so the common case is a gather.
    Built by :func:`class_loss`, which hands it to the member's per-sample function.
    """

    def __init__(
        self,
        z: torch.Tensor,
        target: torch.Tensor,
        weight: torch.Tensor | None = None,
        ignore_index: int = IGNORE_INDEX,
        label_smoothing: float = 0.0,
    ):
        num_classes = z.shape[1]
        w = None
        if weight is not None:
            if weight.shape != (num_classes,):
                raise ValueError(
                    f"weight must hold one weight per class, shape ({num_classes},); got weight of "
                    f"shape {tuple(weight.shape)} for logits of shape {tuple(z.shape)}"
                )
            w = weight.to(device=z.device, dtype=z.dtype).view(1, num_classes, *([1] * (z.ndim - 2)))
        eps = float(label_smoothing)
        self.index: torch.Tensor | None = None
        self.dense: torch.Tensor | None = None
        if target.dtype.is_floating_point:
            if target.shape != z.shape:
                raise ValueError(
                    f"a probability target must have the logits' shape {tuple(z.shape)}, got "
                    f"{tuple(target.shape)}; class indices must be an integer tensor"
                )
            if ignore_index != IGNORE_INDEX:
                raise ValueError(
                    f"ignore_index applies to class-index targets only (as in torch), got "
                    f"ignore_index={ignore_index} with a probability target"
                )
            q = target.to(device=z.device, dtype=z.dtype)
            if not torch.compiler.is_compiling() and bool((q < 0).any()):  # a host read: eager mode only
                raise ValueError(f"a probability target must be >= 0, found {q[q < 0].flatten()[:5].tolist()}")
            if eps:
                q = q * (1 - eps) + eps / num_classes
            self.dense = q if w is None else q * w
            self.weight = self.dense.sum(1)
            self.denominator = torch.tensor(float(self.weight.numel()), dtype=z.dtype, device=z.device)
            return
        expected = z.shape[:1] + z.shape[2:]
        if target.dtype == torch.bool or target.is_complex() or target.shape != expected:
            raise ValueError(
                f"a class-index target must be an integer tensor of shape {tuple(expected)} for logits "
                f"of shape {tuple(z.shape)}, got dtype {target.dtype}, shape {tuple(target.shape)}"
            )
        target = target.to(device=z.device, dtype=torch.int64)
        valid = target != ignore_index
        index = torch.where(valid, target, 0)
        checked = not torch.compiler.is_compiling()  # host reads: eager mode only (compiled: no sync, no break)
        if checked and index.numel() and (int(index.min()) < 0 or int(index.max()) >= num_classes):
            bad = target[valid & ((target < 0) | (target >= num_classes))].flatten()[:5].tolist()
            raise ValueError(f"class index out of range [0, {num_classes}): found {bad} (ignore_index={ignore_index})")
        valid_f = valid.to(z.dtype)
        sample_weight = valid_f if w is None else w.view(-1)[index] * valid_f
        self.denominator = sample_weight.sum()
        if not eps:
            self.index, self.weight = index, sample_weight
            return
        q = F.one_hot(index, num_classes).movedim(-1, 1).to(z.dtype) * (1 - eps) + eps / num_classes
        self.dense = (q if w is None else q * w) * valid_f.unsqueeze(1)
        self.weight = self.dense.sum(1)

    def expect(self, per_class: torch.Tensor) -> torch.Tensor:
        """sum_j a_nj * per_class_nj: per-class losses [N, C, ...] -> the label's weighted expectation [N, ...]."""
        if self.index is not None:
            return self.weight * per_class.gather(1, self.index.unsqueeze(1)).squeeze(1)
        return (self.dense * per_class).sum(1)

    def nll(self, z: torch.Tensor) -> torch.Tensor:
        """Per-sample cross-entropy H = -sum_j a_j log p_j / s of the label distribution a / s (0 where s = 0)."""
        weighs = self.weight > 0
        if self.index is not None:
            return torch.where(weighs, F.cross_entropy(z, self.index, reduction="none"), 0)
        return torch.where(weighs, self.expect(-F.log_softmax(z, dim=1)) / torch.where(weighs, self.weight, 1), 0)

    def reduce(self, loss: torch.Tensor, reduction: str) -> torch.Tensor:
        """torch's reductions; 'mean' over grid entries too when tensor k/m broadcast the loss beyond [N, ...]."""
        if reduction == "none":
            return loss
        total = loss.sum()
        if reduction == "sum":
            return total
        denominator = self.denominator * (loss.numel() // max(self.weight.numel(), 1))
        some = denominator > 0
        return torch.where(some, total / torch.where(some, denominator, 1), math.nan)


def class_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    per_sample: Callable[[torch.Tensor, ClassTargets], torch.Tensor],
    reduction: str = "mean",
    *,
    weight: torch.Tensor | None = None,
    ignore_index: int = IGNORE_INDEX,
    label_smoothing: float = 0.0,
) -> torch.Tensor:
    """Any multi-class loss with ``nn.CrossEntropyLoss``'s options, given its per-sample loss.

    ``per_sample(z, targets)`` gets the logits in the compute dtype (float32, or float64) [N, C, ...] and the
    :class:`ClassTargets` and returns [N, ...] (or a broadcast of it); a function of the nll is
    ``targets.weight * f(targets.nll(z))``. Unbatched logits [C] take a 0-d index or [C] probabilities.
    """
    _check_reduction(reduction)
    check_class_options(weight, ignore_index, label_smoothing)
    if not torch.is_tensor(logits) or not torch.is_tensor(target):
        raise ParameterTypeError(
            f"logits and target must be tensors, got {type(logits).__name__} and {type(target).__name__}"
        )
    unbatched = logits.ndim == 1
    if unbatched:
        if target.shape not in ((), logits.shape):
            raise ValueError(
                f"unbatched logits {tuple(logits.shape)} take a 0-d class index or probabilities of "
                f"shape {tuple(logits.shape)}, got a target of shape {tuple(target.shape)}"
            )
        logits, target = logits.unsqueeze(0), target.unsqueeze(0)
    if logits.ndim < 2:
        raise ValueError(f"multi-class logits must have shape [N, C, ...] or [C], got {tuple(logits.shape)}")
    z = logits.to(_compute_dtype(logits))
    targets = ClassTargets(z, target, weight, ignore_index, label_smoothing)
    loss = targets.reduce(per_sample(z, targets), reduction)
    return loss.squeeze(-1) if unbatched and reduction == "none" else loss


def nll_binary_loss(
    logits: torch.Tensor, target: Target, transform: Callable[[torch.Tensor], torch.Tensor], reduction: str = "mean"
) -> torch.Tensor:
    """A binary member that is a function f of the per-sample nll softplus(-y z): ``f(nll)``, reduced."""
    _check_reduction(reduction)
    return _reduce(transform(binary_nll(logits, target)), reduction)


def nll_class_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    transform: Callable[[torch.Tensor], torch.Tensor],
    reduction: str = "mean",
    **options,
) -> torch.Tensor:
    """A multi-class member that is a function f of the per-sample nll: ``s * f(H)`` (module doc), reduced."""
    return class_loss(logits, target, lambda z, t: t.weight * transform(t.nll(z)), reduction, **options)


# ----------------------------------------------------------------------------------------------------------------
# The rooted transform of a negative log-likelihood.


def eq4_exponent_cap(input_dtype: torch.dtype, k: Scalar, m: Scalar) -> Scalar:
    """Largest exponent t = nll/k at which eq. 4 is evaluated exactly; beyond it the loss continues linearly.

    Chosen so that the largest per-logit gradient, (m/k) * exp(t_max), is at most a quarter of the input dtype's
    largest finite value (float16: t_max ~ 9.7 for m = k), and never above exp(50) so values stay finite.
    Tensor k or m give a tensor of caps.
    """
    if not (torch.is_tensor(k) or torch.is_tensor(m)):
        if torch.compiler.is_compiling():
            return _eq4_number_cap(input_dtype, float(k), float(m))
        return _eq4_number_cap_cached(input_dtype, float(k), float(m))  # eager calls repeat the same few
    dtype = input_dtype if input_dtype.is_floating_point else torch.float32
    ratio = torch.as_tensor(m, dtype=torch.float64) / torch.as_tensor(k, dtype=torch.float64)
    cap = math.log(torch.finfo(dtype).max) - torch.log(4.0 * ratio.clamp(min=1.0))
    return cap.clamp(max=EQ4_EXPONENT_CAP_MAX)


def _eq4_number_cap(input_dtype: torch.dtype, k: float, m: float) -> float:
    dtype = input_dtype if input_dtype.is_floating_point else torch.float32
    return min(math.log(torch.finfo(dtype).max) - math.log(4.0 * max(1.0, m / k)), EQ4_EXPONENT_CAP_MAX)


_eq4_number_cap_cached = functools.lru_cache(maxsize=256)(_eq4_number_cap)


def rooted_from_nll(
    nll: torch.Tensor, k: Scalar, m: Scalar | None = None, form: str = "eq4", input_dtype: torch.dtype | None = None
) -> torch.Tensor:
    """Per-sample rooted loss from nll = -log p >= 0 (see the module docstring for both forms).

    k and m may be tensors broadcastable against nll (e.g. one k per model, shape [M, 1]) to evaluate a
    whole k-grid in one call.
    """
    k = check_k(k)
    m = resolve_m(k, m)
    _check_form(form)
    if torch.is_tensor(k):
        k = k.to(device=nll.device, dtype=nll.dtype)
    if torch.is_tensor(m):
        m = m.to(device=nll.device, dtype=nll.dtype)
    t = nll / k
    if form == "eq9":
        return -m * torch.expm1(-t)
    t_max = eq4_exponent_cap(input_dtype or nll.dtype, k, m)
    if torch.is_tensor(t_max):
        t_capped = torch.minimum(t, t_max.to(device=nll.device, dtype=nll.dtype))
    else:
        t_capped = t.clamp(max=t_max)
    return m * torch.exp(t_capped) * (1 + (t - t_capped))


# ----------------------------------------------------------------------------------------------------------------
# Public losses. Binary: logits of any shape, target as in the module doc. Multi-class: logits [N, C, ...] or [C],
# target and the keyword options weight / ignore_index / label_smoothing as nn.CrossEntropyLoss (module doc).


def rooted_logistic(
    logits: torch.Tensor, target: Target, k: Scalar, m: Scalar | None = None, form: str = "eq4", reduction: str = "mean"
) -> torch.Tensor:
    """Binary rooted logistic loss. logits [N] (any shape), target in {0, 1} or {-1, +1} (same shape, or a scalar).

    eq4: m * (1 + exp(-y z))**(1/k);  eq9: m * (1 - (1 + exp(-y z))**(-1/k)).
    """
    k = check_k(k)
    m = resolve_m(k, m)
    _check_form(form)
    return nll_binary_loss(
        logits, target, lambda nll: rooted_from_nll(nll, k, m, form, input_dtype=logits.dtype), reduction
    )


def rooted_binary_cross_entropy_with_logits(
    logits: torch.Tensor,
    target: torch.Tensor,
    k: Scalar,
    m: Scalar | None = None,
    form: str = "eq4",
    reduction: str = "mean",
    *,
    weight: torch.Tensor | None = None,
    pos_weight: torch.Tensor | None = None,
) -> torch.Tensor:
    """``F.binary_cross_entropy_with_logits`` rooted: targets in [0, 1] (soft), ``weight`` (rescales each element,
    broadcast) and ``pos_weight`` (the positive class's weight, broadcast along the last dimension), as torch.

    The rule of the multi-class losses (module doc) with two classes: class weights a1 = pos_weight * y and
    a0 = 1 - y, s = a1 + a0, H = (a1 softplus(-z) + a0 softplus(z)) / s the cross-entropy with the target, and the
    loss s * f(H), f the rooted form. f = identity is torch's BCE exactly; hard targets give rooted_logistic.
    """
    k = check_k(k)
    m = resolve_m(k, m)
    _check_form(form)
    _check_reduction(reduction)
    if not torch.is_tensor(logits) or not torch.is_tensor(target) or not target.dtype.is_floating_point:
        raise ParameterTypeError("logits and target must be tensors, the target floating (probabilities in [0, 1])")
    if target.shape != logits.shape:
        raise ValueError(f"target shape {tuple(target.shape)} must equal the logits' {tuple(logits.shape)}")
    z = logits.to(_compute_dtype(logits))
    y = target.to(z.dtype)
    if not torch.compiler.is_compiling() and bool(((y < 0) | (y > 1)).any()):  # host read: eager mode only
        raise ValueError(f"binary targets must lie in [0, 1], found {y[(y < 0) | (y > 1)].flatten()[:5].tolist()}")
    a1 = y if pos_weight is None else y * pos_weight.to(z.dtype)
    a0 = 1 - y
    s = a1 + a0
    h = (a1 * F.softplus(-z) + a0 * F.softplus(z)) / torch.where(s > 0, s, 1)
    loss = torch.where(s > 0, s * rooted_from_nll(h, k, m, form, input_dtype=logits.dtype), 0)
    if weight is not None:
        loss = loss * weight.to(z.dtype)
    return _reduce(loss, reduction)


def rooted_cross_entropy(
    logits: torch.Tensor,
    target: torch.Tensor,
    k: Scalar,
    m: Scalar | None = None,
    form: str = "eq4",
    reduction: str = "mean",
    *,
    weight: torch.Tensor | None = None,
    ignore_index: int = IGNORE_INDEX,
    label_smoothing: float = 0.0,
) -> torch.Tensor:
    """Multi-class rooted loss of the per-sample nll H; index target: p = softmax probability of the target.

    eq4: m * p**(-1/k) = m * exp(H / k);  eq9: m * (1 - p**(1/k)); times the sample weight (module doc).
    """
    dtype = logits.dtype if torch.is_tensor(logits) else None
    if _plain_call(k, m, form, reduction, ignore_index, label_smoothing) and not torch.compiler.is_compiling():
        k, m, t_max = _checked_rooted_call(k, m, form, reduction, ignore_index, label_smoothing, dtype)
    else:
        k, m, t_max = _check_rooted_call(k, m, form, reduction, ignore_index, label_smoothing, dtype)
    if fused.applies(logits, target, k, m, weight, label_smoothing, ignore_index):
        loss = fused.rooted_index_loss(logits, target, k, m, form, t_max, reduction, _rooted_general)
        if loss is not None:
            return loss
    return _rooted_general(logits, target, k, m, form, reduction, weight, ignore_index, label_smoothing)


def _plain_call(k, m, form, reduction, ignore_index, label_smoothing) -> bool:
    """Options of plain types, hashable, so their checks can be cached."""
    if not all(type(value) is float or type(value) is int or value is None for value in (k, m, label_smoothing)):
        return False
    return type(form) is str and type(reduction) is str and type(ignore_index) is int


def _check_rooted_call(k, m, form, reduction, ignore_index, label_smoothing, dtype):
    """(k, m, eq. 4's exponent cap for that dtype where k and m are numbers) after the checks of every option but
    the class weight (a host read, checked once in class_loss)."""
    k = check_k(k)
    m = resolve_m(k, m)
    _check_form(form)
    _check_reduction(reduction)
    check_class_options(None, ignore_index, label_smoothing)
    number_cap = dtype is not None and not (torch.is_tensor(k) or torch.is_tensor(m))
    return k, m, eq4_exponent_cap(dtype, k, m) if number_cap else None


# An eager training loop repeats the same call: its plain-number options are checked once. typed=True keeps 3,
# 3.0 and True apart, so a bool k is still refused; a refused call raises and is not cached.
_checked_rooted_call = functools.lru_cache(maxsize=256, typed=True)(_check_rooted_call)


def _rooted_general(
    logits: torch.Tensor,
    target: torch.Tensor,
    k: Scalar,
    m: Scalar,
    form: str,
    reduction: str,
    weight: torch.Tensor | None = None,
    ignore_index: int = IGNORE_INDEX,
    label_smoothing: float = 0.0,
) -> torch.Tensor:
    """rooted_cross_entropy op by op, for every option (and the fused path's graph-recording backward)."""
    return nll_class_loss(
        logits,
        target,
        lambda nll: rooted_from_nll(nll, k, m, form, input_dtype=logits.dtype),
        reduction,
        weight=weight,
        ignore_index=ignore_index,
        label_smoothing=label_smoothing,
    )


def cross_entropy(
    logits: torch.Tensor,
    target: torch.Tensor,
    reduction: str = "mean",
    *,
    weight: torch.Tensor | None = None,
    ignore_index: int = IGNORE_INDEX,
    label_smoothing: float = 0.0,
) -> torch.Tensor:
    """Multi-class cross-entropy -log p, in float32 like the rest of the family; equals ``F.cross_entropy``."""
    _check_reduction(reduction)
    check_class_options(None, ignore_index, label_smoothing)  # the weight (a host read) is checked once, in class_loss
    if fused.applies(logits, target, 1.0, 1.0, weight, label_smoothing, ignore_index):
        loss = fused.cross_entropy(logits, target, reduction, ignore_index)  # the same loss, as torch's one op
        if loss is not None:
            return loss
    return nll_class_loss(
        logits,
        target,
        lambda nll: nll,
        reduction,
        weight=weight,
        ignore_index=ignore_index,
        label_smoothing=label_smoothing,
    )


def logistic(logits: torch.Tensor, target: Target, reduction: str = "mean") -> torch.Tensor:
    """Binary logistic loss log(1 + exp(-y z)), the softplus form StyleGAN2 uses."""
    return nll_binary_loss(logits, target, lambda nll: nll, reduction)


def _focal_from_nll(nll: torch.Tensor, gamma: Scalar) -> torch.Tensor:
    # (1 - p)**gamma * nll with 1 - p = -expm1(-nll); the clamp keeps d/dp finite at p = 1 for gamma < 1.
    one_minus_p = (-torch.expm1(-nll)).clamp_min(torch.finfo(nll.dtype).tiny)
    return one_minus_p.pow(gamma) * nll


def focal_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    gamma: Scalar = 3.0,
    alpha: Scalar | None = 0.25,
    reduction: str = "mean",
    *,
    weight: torch.Tensor | None = None,
    ignore_index: int = IGNORE_INDEX,
    label_smoothing: float = 0.0,
) -> torch.Tensor:
    """Multi-class focal loss alpha * (1 - p)**gamma * (-log p) (Lin et al. 2017); alpha is one scalar weight.

    With soft or smoothed targets p = exp(-H), the geometric mean of p_j under the label (module doc). The defaults
    gamma = 3, alpha = 0.25 are the ones the RLO authors' classifier code used.
    """
    gamma = check_gamma(gamma)
    alpha = check_alpha(alpha)
    scale = 1.0 if alpha is None else alpha
    return nll_class_loss(
        logits,
        target,
        lambda nll: scale * _focal_from_nll(nll, gamma),
        reduction,
        weight=weight,
        ignore_index=ignore_index,
        label_smoothing=label_smoothing,
    )


def binary_focal_loss(
    logits: torch.Tensor, target: Target, gamma: Scalar = 3.0, alpha: Scalar | None = 0.25, reduction: str = "mean"
) -> torch.Tensor:
    """Binary focal loss; alpha weighs positives and 1 - alpha negatives, as in RetinaNet."""
    _check_reduction(reduction)
    gamma = check_gamma(gamma)
    alpha = check_alpha(alpha)
    z = logits.to(_compute_dtype(logits))
    sign = binary_sign(target, z)
    loss = _focal_from_nll(F.softplus(-sign * z), gamma)
    if alpha is not None:
        loss = torch.where(sign > 0, alpha, 1 - alpha) * loss
    return _reduce(loss, reduction)


def unhinged_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    reduction: str = "mean",
    *,
    weight: torch.Tensor | None = None,
    ignore_index: int = IGNORE_INDEX,
    label_smoothing: float = 0.0,
) -> torch.Tensor:
    """Multi-class unhinged loss: 1 - (z_y - mean_{j != y} z_j), linear in the true-class score.

    Our multi-class definition: the margin of the true-class logit over the mean of the others. With C = 2 and the
    binary margin z = z_1 - z_0 it is exactly the binary unhinged loss 1 - y z (van Rooyen et al. 2015). Linear in
    the label, so a soft or smoothed target gives the expected loss sum_j a_j * loss_j (module doc).
    Unbounded below: pair it with weight decay or feature normalisation.
    """

    def per_sample(z: torch.Tensor, targets: ClassTargets) -> torch.Tensor:
        num_classes = z.shape[1]
        if num_classes < 2:
            raise ValueError(f"unhinged loss needs at least 2 classes, got logits of shape {tuple(logits.shape)}")
        # loss_j = 1 - z_j + (sum(z) - z_j) / (C - 1) is linear in z_j, so its expectation needs only sum_j a_j z_j
        scale = num_classes / (num_classes - 1)
        return targets.weight * (1 + z.sum(dim=1) / (num_classes - 1)) - scale * targets.expect(z)

    return class_loss(
        logits, target, per_sample, reduction, weight=weight, ignore_index=ignore_index, label_smoothing=label_smoothing
    )


def binary_unhinged_loss(logits: torch.Tensor, target: Target, reduction: str = "mean") -> torch.Tensor:
    """Binary unhinged loss 1 - y z (van Rooyen et al. 2015)."""
    _check_reduction(reduction)
    z = logits.to(_compute_dtype(logits))
    return _reduce(1 - binary_sign(target, z) * z, reduction)


def hinge_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    reduction: str = "mean",
    *,
    weight: torch.Tensor | None = None,
    ignore_index: int = IGNORE_INDEX,
    label_smoothing: float = 0.0,
) -> torch.Tensor:
    """Multi-class hinge loss max(0, 1 + max_{j != y} z_j - z_y) (Crammer & Singer 2001).

    Our multi-class definition: the true class must beat the strongest other class by a margin of 1. With C = 2 and
    the binary margin z = z_1 - z_0 it is exactly the binary hinge relu(1 - y z). A soft or smoothed target gives
    the expected loss sum_j a_j * loss_j over the classes (as for unhinged; module doc).
    """

    def per_sample(z: torch.Tensor, targets: ClassTargets) -> torch.Tensor:
        if z.shape[1] < 2:
            raise ValueError(f"hinge loss needs at least 2 classes, got logits of shape {tuple(logits.shape)}")
        top2 = z.topk(2, dim=1).values
        best, second = top2[:, :1], top2[:, 1:]
        strongest_other = torch.where(z >= best, second, best)  # for the top class, the runner-up (ties: itself)
        return targets.expect(F.relu(1 + strongest_other - z))

    return class_loss(
        logits, target, per_sample, reduction, weight=weight, ignore_index=ignore_index, label_smoothing=label_smoothing
    )


def binary_hinge_loss(logits: torch.Tensor, target: Target, reduction: str = "mean") -> torch.Tensor:
    """Binary hinge relu(1 - y z): BigGAN's and Projected GAN's discriminator loss."""
    _check_reduction(reduction)
    z = logits.to(_compute_dtype(logits))
    return _reduce(F.relu(1 - binary_sign(target, z) * z), reduction)


def binary_linear_loss(logits: torch.Tensor, target: Target, reduction: str = "mean") -> torch.Tensor:
    """-y z: the generator's loss of hinge GANs (BigGAN: G minimises -D(G(z)))."""
    _check_reduction(reduction)
    z = logits.to(_compute_dtype(logits))
    return _reduce(-binary_sign(target, z) * z, reduction)
