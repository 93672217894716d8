"""The common classifier call in eager mode, as one autograd node: logits [N, C] in float32 or float64, class
indices, no class weight, no smoothing, scalar k and m.

Written out op by op (the general path in rlo.functional), a rooted loss on a small batch costs several times
F.cross_entropy, nearly all of it per-op dispatch and autograd bookkeeping, not arithmetic. Here the forward is
log-softmax, the picked log-probability and the rooted transform, and the backward is the closed form

    d loss_i / d z_i = c_i * (softmax(z_i) - onehot(y_i)),   c_i = d rooted(nll_i) / d nll_i,

with c_i = (m/k) exp(min(nll_i/k, t_max)) for eq. 4 (the same tangent-line cap as the general path) and
(m/k) exp(-nll_i/k) for eq. 9. Values and gradients equal the general path's (tests compare both). A backward
that records a graph (create_graph=True, for gradient penalties) is handed to the general path, so second
derivatives stay exact.

Target indices are not read on the host on CPU: the CPU kernels refuse an index outside [0, C) themselves (an
ignore_index sample is one), and the caller then takes the general path, which names the index or leaves the
ignored samples out. On other devices an out-of-range index would be a device-side assert, so they are checked
first (one read). On CPU eq. 4's cap is applied only where it binds, found by one host read (free there): of the
sum of exp(t) for a reduced loss, which bounds every term and is needed anyway, else of the largest t; other
devices apply the cap as ops, without a read.

Two CPU details, each worth several per cent of a small call. Scalar factors are cached 0-d tensors: a Python
float is wrapped into a new tensor on every op. And few classes are laid out class-major: torch's CPU log-softmax
over the last dim is slow on rows shorter than one SIMD vector of floats, and the same log-softmax over dim 0 of
the transposed [C, N] view vectorises across samples instead. `benchmarks/bench_class_major.py` times the whole
loss both ways on a grid and shows where the rule in `class_dim` takes which.
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F

FAST_DTYPES = (torch.float32, torch.float64)

# Below this many logits the transposed view's set-up costs more than the short rows' scalar loop.
CLASS_MAJOR_MIN_NUMEL = 512


def applies(logits, target, k, m, weight, label_smoothing, ignore_index) -> bool:
    """Whether the call is the common case this path computes; the general path takes everything else, and
    raises for what is wrong. In eager mode only."""
    if weight is not None or label_smoothing or torch.compiler.is_compiling():
        return False
    if torch.is_tensor(k) or torch.is_tensor(m):  # a k-grid: the general path broadcasts it
        return False
    if not (torch.is_tensor(logits) and torch.is_tensor(target)):
        return False
    if logits.ndim != 2 or target.ndim != 1 or logits.dtype not in FAST_DTYPES or target.dtype != torch.int64:
        return False
    n, c = logits.shape
    if n == 0 or target.shape[0] != n or 0 <= ignore_index < c:  # in-range ignored samples: the general path
        return False
    if logits.is_cpu:  # the kernels check the indices (module doc)
        return target.is_cpu
    if target.device != logits.device:
        return False
    low, high = torch.aminmax(target)
    return 0 <= int(low) and int(high) < c


def class_dim(logits: torch.Tensor) -> int:
    """1, or 0 where the log-softmax is computed over the transposed [C, N] view (module doc)."""
    n, c = logits.shape
    if not logits.is_cpu or n * c < CLASS_MAJOR_MIN_NUMEL:
        return 1
    return 0 if c < _short_row_classes() else 1


@functools.cache
def _short_row_classes() -> int:
    """Rows of fewer classes than one SIMD vector holds floats are the slow ones, in float64 as in float32 (as
    measured), for the kernels torch dispatched to on this CPU (ATEN_CPU_CAPABILITY can lower them)."""
    return {"AVX512": 16, "AVX2": 8}.get(torch.backends.cpu.get_cpu_capability(), 0)


@functools.lru_cache(maxsize=256)
def _constant(value: float, dtype: torch.dtype) -> torch.Tensor:
    """A 0-d CPU tensor of value (a CPU scalar combines with tensors on any device); cached, never written, only
    read by ops autograd does not record (so one made under inference_mode serves training too)."""
    return torch.tensor(value, dtype=dtype)


def cross_entropy(logits, target, reduction: str, ignore_index: int) -> torch.Tensor | None:
    """F.cross_entropy of a call `applies` accepted; None where the CPU kernel refused an index."""
    try:
        return F.cross_entropy(logits, target, reduction=reduction, ignore_index=ignore_index)
    except IndexError:
        return None


def rooted_index_loss(
    logits, target, k: float, m: float, form: str, t_max: float, reduction: str, general, dim: int | None = None
):
    """The rooted loss of a call `applies` accepted (module doc), or None where the CPU kernel refused an index.
    `general(logits, target, k, m, form, reduction)` is the general path, used for backward passes that record
    a graph. `dim` forces the layout (class_dim's choice by default)."""
    try:
        return _RootedIndexLoss.apply(
            logits, target, k, m, form, t_max, reduction, general, class_dim(logits) if dim is None else dim
        )
    except RuntimeError:
        if not logits.is_cpu:
            raise
        return None


def _capped(t: torch.Tensor, t_max: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(exp(min(t, t_max)), 1 + t - min(t, t_max)): eq. 4 is m times their product, its tangent line beyond."""
    t_capped = t.clamp(max=t_max)
    return t_capped.exp(), (t - t_capped).add_(1.0)


class _RootedIndexLoss(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits, target, k, m, form, t_max, reduction, general, dim):
        n, dtype = logits.shape[0], logits.dtype
        log_p = torch.log_softmax(logits.t(), 0) if dim == 0 else torch.log_softmax(logits, 1)
        index = target.unsqueeze(dim)  # [1, N] or [N, 1]
        t = log_p.gather(dim, index).mul_(_constant(-1.0 / k, dtype))  # nll / k; refuses a bad index
        total = factor = None
        if form == "eq9":  # m (1 - exp(-t))
            grow = t.neg_().exp_()
        elif not logits.is_cpu:
            grow, factor = _capped(t, t_max)
        elif reduction == "none":
            grow, factor = _capped(t, t_max) if float(t.max()) > t_max else (t.exp_(), None)
        else:  # m exp(t), unless the sum shows a term past the cap (also an inf or nan)
            grow = t.exp()
            total = grow.sum()
            if not float(total) <= math.exp(t_max):
                grow, factor = _capped(t, t_max)
                total = None
        ctx.save_for_backward(logits, index, log_p, grow)
        ctx.options = (k, m, form, reduction, general, dim)
        if reduction == "none":
            if form == "eq9":
                value = grow.neg().add_(1.0)
            else:
                value = grow if factor is None else grow.mul(factor)
            return value.mul(_constant(m, dtype)).squeeze_(dim)
        if total is None:
            total = grow.sum() if factor is None else (grow * factor).sum()
        scale = m / n if reduction == "mean" else m
        if form == "eq4":
            return total.mul_(_constant(scale, dtype))
        return total.mul_(_constant(-scale, dtype)).add_(_constant(n * scale, dtype))

    @staticmethod
    def backward(ctx, grad_output):
        logits, index, log_p, grow = ctx.saved_tensors
        k, m, form, reduction, general, dim = ctx.options
        if torch.is_grad_enabled():  # create_graph=True: differentiate the general path, which records its graph
            loss = general(logits, index.view(-1), k, m, form, reduction)
            (grad,) = torch.autograd.grad(loss, logits, grad_output, create_graph=True)
            return grad, None, None, None, None, None, None, None, None
        scale = m / k / (logits.shape[0] if reduction == "mean" else 1)
        incoming = grad_output.unsqueeze(dim) if reduction == "none" else grad_output
        coef = grow.mul(incoming).mul_(_constant(scale, grow.dtype))  # c_i times the incoming gradient
        grad = log_p.exp().mul_(coef).scatter_add_(dim, index, coef.neg_())
        return grad.t() if dim == 0 else grad, None, None, None, None, None, None, None, None
