"""The common classifier call in eager mode, as one autograd node: logits [N, C] in float32 or float64, class
indices all in range, no class weight, no smoothing, scalar k and m.

Written out op by op (the general path in rlo.functional), a rooted loss on a small batch costs several times
F.cross_entropy, nearly all of it per-op dispatch and autograd bookkeeping, not arithmetic. Here the forward is
log-softmax, the picked nll and the rooted transform, and the backward is the closed form

    d loss_i / d z_i = c_i * (softmax(z_i) - onehot(y_i)),   c_i = d rooted(nll_i) / d nll_i,

with c_i = (m/k) exp(min(nll_i/k, t_max)) for eq. 4 (the same tangent-line cap as the general path) and
(m/k) exp(-nll_i/k) for eq. 9. Values and gradients equal the general path's (tests compare both). A backward
that records a graph (create_graph=True, for gradient penalties) is handed to the general path, so second
derivatives stay exact.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

FAST_DTYPES = (torch.float32, torch.float64)


def applies(logits, target, k, m, weight, label_smoothing, ignore_index) -> bool:
    """Whether the call is the common case this path computes; the general path takes everything else, and
    raises for what is wrong (indices out of range, ...). In eager mode only: reads two values from the device."""
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
    low, high = torch.aminmax(target)
    return 0 <= int(low) and int(high) < logits.shape[1]


class _RootedIndexLoss(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits, target, k, m, form, t_max, reduction, general):
        log_p = torch.log_softmax(logits, 1)
        t = F.nll_loss(log_p, target, reduction="none").mul_(1.0 / k)  # nll / k
        if form == "eq4":  # m exp(t) below the cap, its tangent line beyond: m exp(t_c) (1 + t - t_c)
            t_capped = t.clamp(max=t_max)
            grow = t_capped.exp()
            factor = (t - t_capped).add_(1.0)
        else:  # m (1 - exp(-t))
            grow = t.neg().exp_()
            factor = None
        ctx.save_for_backward(logits, target, log_p, grow)
        ctx.options = (k, m, form, reduction, general)
        scale = m / logits.shape[0] if reduction == "mean" else m
        if reduction == "none":
            return grow.mul(factor).mul_(m) if factor is not None else grow.neg().add_(1.0).mul_(m)
        if factor is not None:
            return torch.dot(grow, factor).mul_(scale)  # the sum in one call: this path is dispatch-bound
        return grow.sum().neg_().add_(logits.shape[0]).mul_(scale)

    @staticmethod
    def backward(ctx, grad_output):
        logits, target, log_p, grow = ctx.saved_tensors
        k, m, form, reduction, general = ctx.options
        if torch.is_grad_enabled():  # create_graph=True: differentiate the general path, which records its graph
            loss = general(logits, target, k, m, form, reduction)
            (grad,) = torch.autograd.grad(loss, logits, grad_output, create_graph=True)
            return grad, None, None, None, None, None, None, None
        scale = m / k / (logits.shape[0] if reduction == "mean" else 1)
        coef = (grow * grad_output).mul_(scale).unsqueeze(1)  # c_i times the incoming gradient
        grad = log_p.exp().mul_(coef)
        grad.scatter_add_(1, target.unsqueeze(1), coef.neg())
        return grad, None, None, None, None, None, None, None


def rooted_index_loss(logits, target, k: float, m: float, form: str, t_max: float, reduction: str, general):
    """The rooted loss of the common case (see the module doc); `general(logits, target, k, m, form, reduction)`
    is the general path, used for backward passes that record a graph."""
    return _RootedIndexLoss.apply(logits, target, k, m, form, t_max, reduction, general)
