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
"""
from __future__ import annotations

import math
from typing import Optional, Union

import torch
import torch.nn.functional as F

Target = Union[torch.Tensor, int, float, bool]

REDUCTIONS = ("mean", "sum", "none")
ROOTED_FORMS = ("eq4", "eq9")
EQ4_EXPONENT_CAP_MAX = 50.0


# ----------------------------------------------------------------------------------------------------------------
# Argument checks.

Scalar = Union[float, torch.Tensor]


def _check_positive(value, name: str, hint: str = "") -> Scalar:
    """A finite positive number, or a tensor of them (one k per model, broadcast against the samples)."""
    if torch.is_tensor(value):
        if not value.dtype.is_floating_point:
            value = value.double()
        if value.numel() and not bool((torch.isfinite(value) & (value > 0)).all()):
            bad = value[~(torch.isfinite(value) & (value > 0))].flatten()[:5].tolist()
            raise ValueError(f"{name} must hold positive finite numbers{hint}, found {name}={bad}")
        return value
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a positive finite number{hint}, got {name}={value!r}") from None
    if not math.isfinite(number) or number <= 0:
        raise ValueError(f"{name} must be a positive finite number{hint}, got {name}={value!r}")
    return number


def check_k(k: Scalar) -> Scalar:
    """k must be finite and positive (a float, or a tensor of them); the rooted loss is undefined otherwise."""
    return _check_positive(k, "k")


def resolve_m(k: Scalar, m: Optional[Scalar]) -> Scalar:
    """The paper's multiplier m; eq. 4 uses m = k, which makes the gradient scale exactly p**(-1/k)."""
    if m is None:
        return k
    return _check_positive(m, "m", " (or None for m = k)")


def _check_reduction(reduction: str) -> None:
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got reduction={reduction!r}")


def _check_form(form: str) -> None:
    if form not in ROOTED_FORMS:
        raise ValueError(f"form must be one of {ROOTED_FORMS}, got form={form!r}")


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
    """Map binary targets in {0, 1}, {-1, +1} or bool to signs in {-1, +1} with the dtype of ``like``."""
    if not torch.is_tensor(target):
        if target not in (0, 1, -1, True, False):
            raise ValueError(f"binary target must be 0, 1, -1, +1 or bool, got target={target!r}")
        return torch.full((), 1.0 if target > 0 else -1.0, dtype=like.dtype, device=like.device)
    if target.dtype == torch.bool:
        return target.to(like.dtype) * 2 - 1
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


def check_class_target(logits: torch.Tensor, target: torch.Tensor) -> None:
    """Multi-class inputs: logits [N, C, ...] and integer class indices in [0, C)."""
    if logits.ndim < 2:
        raise ValueError(f"multi-class logits must have shape [N, C, ...], got {tuple(logits.shape)}")
    if target.dtype.is_floating_point or target.dtype == torch.bool:
        raise ValueError(f"multi-class target must hold integer class indices, got dtype {target.dtype}")
    num_classes = logits.shape[1]
    if target.numel() and (int(target.min()) < 0 or int(target.max()) >= num_classes):
        raise ValueError(f"class index out of range [0, {num_classes}): "
                         f"min {int(target.min())}, max {int(target.max())}")


def class_nll(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """-log softmax(z)[y] per sample. logits [N, C, ...], integer target [N, ...]."""
    check_class_target(logits, target)
    return F.cross_entropy(logits.to(_compute_dtype(logits)), target, reduction="none")


# ----------------------------------------------------------------------------------------------------------------
# The rooted transform of a negative log-likelihood.

def eq4_exponent_cap(input_dtype: torch.dtype, k: Scalar, m: Scalar) -> Scalar:
    """Largest exponent t = nll/k at which eq. 4 is evaluated exactly; beyond it the loss continues linearly.

    Chosen so that the largest per-logit gradient, (m/k) * exp(t_max), is at most a quarter of the input dtype's
    largest finite value (float16: t_max ~ 9.7 for m = k), and never above exp(50) so values stay finite.
    Tensor k or m give a tensor of caps.
    """
    dtype = input_dtype if input_dtype.is_floating_point else torch.float32
    log_finite_max = math.log(torch.finfo(dtype).max)
    if torch.is_tensor(k) or torch.is_tensor(m):
        ratio = torch.as_tensor(m, dtype=torch.float64) / torch.as_tensor(k, dtype=torch.float64)
        cap = log_finite_max - torch.log(4.0 * ratio.clamp(min=1.0))
        return cap.clamp(max=EQ4_EXPONENT_CAP_MAX)
    return min(log_finite_max - math.log(4.0 * max(1.0, m / k)), EQ4_EXPONENT_CAP_MAX)


def rooted_from_nll(nll: torch.Tensor, k: Scalar, m: Optional[Scalar] = None, form: str = "eq4",
                    input_dtype: Optional[torch.dtype] = None) -> torch.Tensor:
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
# Public losses.

def rooted_logistic(logits: torch.Tensor, target: Target, k: Scalar, m: Optional[Scalar] = None,
                    form: str = "eq4", reduction: str = "mean") -> torch.Tensor:
    """Binary rooted logistic loss. logits [N] (any shape), target in {0, 1} or {-1, +1} (same shape, or a scalar).

    eq4: m * (1 + exp(-y z))**(1/k);  eq9: m * (1 - (1 + exp(-y z))**(-1/k)).
    """
    _check_reduction(reduction)
    loss = rooted_from_nll(binary_nll(logits, target), k, m, form, input_dtype=logits.dtype)
    return _reduce(loss, reduction)


def rooted_cross_entropy(logits: torch.Tensor, target: torch.Tensor, k: Scalar, m: Optional[Scalar] = None,
                         form: str = "eq4", reduction: str = "mean") -> torch.Tensor:
    """Multi-class rooted loss. logits [N, C, ...], integer target [N, ...]; p = softmax probability of the target.

    eq4: m * p**(-1/k);  eq9: m * (1 - p**(1/k)).
    """
    _check_reduction(reduction)
    loss = rooted_from_nll(class_nll(logits, target), k, m, form, input_dtype=logits.dtype)
    return _reduce(loss, reduction)


def cross_entropy(logits: torch.Tensor, target: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Multi-class cross-entropy, -log p, in float32 like the rest of the family."""
    _check_reduction(reduction)
    return _reduce(class_nll(logits, target), reduction)


def logistic(logits: torch.Tensor, target: Target, reduction: str = "mean") -> torch.Tensor:
    """Binary logistic loss log(1 + exp(-y z)), the softplus form StyleGAN2 uses."""
    _check_reduction(reduction)
    return _reduce(binary_nll(logits, target), reduction)


def _focal_from_nll(nll: torch.Tensor, gamma: float) -> torch.Tensor:
    # (1 - p)**gamma * nll with 1 - p = -expm1(-nll); the clamp keeps d/dp finite at p = 1 for gamma < 1.
    one_minus_p = (-torch.expm1(-nll)).clamp_min(torch.finfo(nll.dtype).tiny)
    return one_minus_p.pow(gamma) * nll


def _check_focal(gamma: float, alpha: Optional[float]) -> None:
    if not math.isfinite(gamma) or gamma < 0:
        raise ValueError(f"focal gamma must be a finite number >= 0, got gamma={gamma!r}")
    if alpha is not None and not 0 <= alpha <= 1:
        raise ValueError(f"focal alpha must lie in [0, 1] (or None), got alpha={alpha!r}")


def focal_loss(logits: torch.Tensor, target: torch.Tensor, gamma: float = 3.0, alpha: Optional[float] = 0.25,
               reduction: str = "mean") -> torch.Tensor:
    """Multi-class focal loss alpha * (1 - p)**gamma * (-log p) (Lin et al. 2017); alpha is one scalar weight.

    The defaults gamma = 3, alpha = 0.25 are the ones the RLO authors' classifier code used.
    """
    _check_reduction(reduction)
    _check_focal(gamma, alpha)
    loss = _focal_from_nll(class_nll(logits, target), gamma)
    return _reduce(loss if alpha is None else alpha * loss, reduction)


def binary_focal_loss(logits: torch.Tensor, target: Target, gamma: float = 3.0, alpha: Optional[float] = 0.25,
                      reduction: str = "mean") -> torch.Tensor:
    """Binary focal loss; alpha weighs positives and 1 - alpha negatives, as in RetinaNet."""
    _check_reduction(reduction)
    _check_focal(gamma, alpha)
    z = logits.to(_compute_dtype(logits))
    sign = binary_sign(target, z)
    loss = _focal_from_nll(F.softplus(-sign * z), gamma)
    if alpha is not None:
        loss = torch.where(sign > 0, alpha, 1 - alpha) * loss
    return _reduce(loss, reduction)


def unhinged_loss(logits: torch.Tensor, target: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Multi-class unhinged loss: 1 - (z_y - mean_{j != y} z_j), linear in the true-class score.

    Our multi-class definition: the margin of the true-class logit over the mean of the others. With C = 2 and the
    binary margin z = z_1 - z_0 it is exactly the binary unhinged loss 1 - y z (van Rooyen et al. 2015).
    Unbounded below: pair it with weight decay or feature normalisation.
    """
    _check_reduction(reduction)
    check_class_target(logits, target)
    z = logits.to(_compute_dtype(logits))
    num_classes = z.shape[1]
    if num_classes < 2:
        raise ValueError(f"unhinged loss needs at least 2 classes, got logits of shape {tuple(logits.shape)}")
    true_score = z.gather(1, target.unsqueeze(1)).squeeze(1)
    others_mean = (z.sum(dim=1) - true_score) / (num_classes - 1)
    return _reduce(1 - (true_score - others_mean), reduction)


def binary_unhinged_loss(logits: torch.Tensor, target: Target, reduction: str = "mean") -> torch.Tensor:
    """Binary unhinged loss 1 - y z (van Rooyen et al. 2015)."""
    _check_reduction(reduction)
    z = logits.to(_compute_dtype(logits))
    return _reduce(1 - binary_sign(target, z) * z, reduction)
