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
first (one read). On CPU eq. 4's cap is applied only where the largest exponent exceeds it (a host read, free
there); on other devices it is applied as ops, without a read.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

FAST_DTYPES = (torch.float32, torch.float64)


def applies(logits, target, k, m, weight, label_smoothing, ignore_index) -> bool:
    """Whether the call is the common case this path computes; the general path takes everything else, and
    raises for what is wrong. In eager mode only."""
    if torch.compiler.is_compiling() or weight is not None or label_smoothing:
        return False
    if torch.is_tensor(k) or torch.is_tensor(m):  # a k-grid: the general path broadcasts it
        return False
    if not (torch.is_tensor(logits) and torch.is_tensor(target)):
        return False
    if logits.ndim != 2 or logits.dtype not in FAST_DTYPES or logits.shape[0] == 0:
        return False
    if target.dtype != torch.int64 or target.shape != logits.shape[:1] or target.device != logits.device:
        return False
    if 0 <= ignore_index < logits.shape[1]:  # some in-range samples may be ignored: the general path weighs them
        return False
    if logits.device.type == "cpu":  # the kernels check the indices (module doc)
        return True
    low, high = torch.aminmax(target)
    return 0 <= int(low) and int(high) < logits.shape[1]


def cross_entropy(logits, target, reduction: str, ignore_index: int) -> torch.Tensor | None:
    """F.cross_entropy of a call `applies` accepted; None where the CPU kernel refused an index."""
    try:
        return F.cross_entropy(logits, target, reduction=reduction, ignore_index=ignore_index)
    except IndexError:
        return None


def rooted_index_loss(logits, target, k: float, m: float, form: str, t_max: float, reduction: str, general):
    """The rooted loss of a call `applies` accepted (module doc), or None where the CPU kernel refused an index.
    `general(logits, target, k, m, form, reduction)` is the general path, used for backward passes that record
    a graph."""
    try:
        return _RootedIndexLoss.apply(logits, target, k, m, form, t_max, reduction, general)
    except RuntimeError:
        if logits.device.type != "cpu":
            raise
        return None


class _RootedIndexLoss(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits, target, k, m, form, t_max, reduction, general):
        n = logits.shape[0]
        log_p = torch.log_softmax(logits, 1)
        index = target.unsqueeze(1)
        t = log_p.gather(1, index).mul_(-1.0 / k)  # nll / k, [N, 1]; refuses a bad index
        factor = None
        if form == "eq4":  # m exp(t) below the cap, its tangent line beyond: m exp(t_c) (1 + t - t_c)
            if logits.device.type != "cpu" or float(t.max()) > t_max:  # a host read is free on CPU only
                t_capped = t.clamp(max=t_max)
                factor = t.sub_(t_capped).add_(1.0)
                t = t_capped
            grow = t.exp_()
        else:  # m (1 - exp(-t))
            grow = t.neg_().exp_()
        ctx.save_for_backward(logits, index, log_p, grow)
        ctx.options = (k, m, form, reduction, general)
        if reduction == "none":
            if form == "eq4":
                value = grow.mul(m) if factor is None else grow.mul(factor).mul_(m)
            else:
                value = grow.neg().add_(1.0).mul_(m)
            return value.squeeze_(1)
        total = grow.sum() if factor is None else torch.dot(grow.squeeze(1), factor.squeeze(1))
        scale = m / n if reduction == "mean" else m
        return total.mul_(scale) if form == "eq4" else total.mul_(-scale).add_(n * scale)

    @staticmethod
    def backward(ctx, grad_output):
        logits, index, log_p, grow = ctx.saved_tensors
        k, m, form, reduction, general = ctx.options
        if torch.is_grad_enabled():  # create_graph=True: differentiate the general path, which records its graph
            loss = general(logits, index.squeeze(1), k, m, form, reduction)
            (grad,) = torch.autograd.grad(loss, logits, grad_output, create_graph=True)
            return grad, None, None, None, None, None, None, None
        scale = m / k / (logits.shape[0] if reduction == "mean" else 1)
        incoming = grad_output.unsqueeze(1) if reduction == "none" else grad_output
        coef = grow.mul(incoming).mul_(scale)  # c_i times the incoming gradient, [N, 1]
        grad = log_p.exp().mul_(coef)
        return grad.scatter_add_(1, index, coef.neg_()), None, None, None, None, None, None, None
