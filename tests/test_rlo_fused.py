"""rlo.fused, the one-node eager path of the common classifier call, equals the general op-by-op path: values,
gradients (also beyond eq. 4's exponent cap), second derivatives, and it steps aside for every other call."""

import pytest
import torch
import torch.nn.functional as F

import rlo
from rlo import functional as RF
from rlo import fused


def general(logits, target, k, m, form, reduction="mean"):
    return RF._rooted_general(logits, target, k, m, form, reduction)


def in_layout(dim):
    """rlo.rooted_cross_entropy's fused call with the log-softmax over rows (1) or class-major (0), forced."""

    def loss_fn(logits, target, k, m, form, reduction):
        t_max = RF.eq4_exponent_cap(logits.dtype, k, k if m is None else m)
        return fused.rooted_index_loss(logits, target, k, k if m is None else m, form, t_max, reduction, general, dim)

    return loss_fn


def both(logits, target, k, m, form, reduction, fast=rlo.rooted_cross_entropy):
    """(fused, general) values and gradients of the same call."""
    out = []
    for loss_fn in (fast, lambda *a, **kw: general(*a, **kw)):
        x = logits.detach().clone().requires_grad_(True)
        loss = loss_fn(x, target, k=k, m=m, form=form, reduction=reduction)
        weights = torch.linspace(0.5, 1.5, loss.numel(), dtype=loss.dtype).view_as(loss)
        (loss * weights).sum().backward()
        out.append((loss.detach(), x.grad))
    return out


@pytest.mark.parametrize("dim", [1, 0])
@pytest.mark.parametrize("form", ["eq4", "eq9"])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_values_and_gradients_equal_the_general_path(form, reduction, dtype, dim):
    logits = torch.randn(37, 11, dtype=dtype) * 4
    target = torch.randint(0, 11, (37,))
    (fast, fast_grad), (slow, slow_grad) = both(logits, target, 2.5, 1.5, form, reduction, in_layout(dim))
    assert fast.dtype == slow.dtype == dtype and fast.shape == slow.shape
    tol = dict(rtol=1e-5, atol=1e-6) if dtype == torch.float32 else dict(rtol=1e-12, atol=1e-13)
    torch.testing.assert_close(fast, slow, **tol)
    torch.testing.assert_close(fast_grad, slow_grad, **tol)


@pytest.mark.parametrize("dim", [1, 0])
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_beyond_the_exponent_cap_the_tangent_line_matches(reduction, dim):
    """Past the cap: per sample (read from the largest exponent) and reduced (read from the sum, which also
    sees a sample whose exp overflows)."""
    logits = torch.zeros(4, 3, dtype=torch.float64)
    logits[:, 0] = torch.tensor([0.0, 80.0, 200.0, 1e4])  # the target 1 is ever more wrong: nll/k past the cap
    target = torch.ones(4, dtype=torch.int64)
    (fast, fast_grad), (slow, slow_grad) = both(logits, target, 1.0, None, "eq4", reduction, in_layout(dim))
    assert torch.isfinite(fast).all() and torch.isfinite(fast_grad).all()
    torch.testing.assert_close(fast, slow, rtol=1e-12, atol=0)
    torch.testing.assert_close(fast_grad, slow_grad, rtol=1e-12, atol=0)


def test_a_sum_just_past_the_cap_takes_the_tangent_line():
    """Every exponent below exp's overflow, one just past the cap: the sum's read must still see it."""
    k, dtype = 1.0, torch.float32
    t_max = RF.eq4_exponent_cap(dtype, k, k)
    logits = torch.zeros(3, 2, dtype=dtype)
    logits[0, 0] = t_max + 1.0  # nll of target 1 is about t_max + 1
    target = torch.ones(3, dtype=torch.int64)
    (fast, fast_grad), (slow, slow_grad) = both(logits, target, k, None, "eq4", "sum")
    uncapped = k * torch.exp(F.cross_entropy(logits, target, reduction="none") / k).sum()
    assert slow < 0.9 * uncapped  # the tangent line lies below exp past the cap
    torch.testing.assert_close(fast, slow, rtol=1e-5, atol=0)
    torch.testing.assert_close(fast_grad, slow_grad, rtol=1e-5, atol=0)


def test_few_classes_go_class_major_on_cpus_with_wide_vectors(monkeypatch):
    monkeypatch.setattr(fused, "_short_row_classes", lambda: 16)
    assert fused.class_dim(torch.empty(64, 10)) == 0
    assert fused.class_dim(torch.empty(64, 10, dtype=torch.float64)) == 0
    assert fused.class_dim(torch.empty(64, 16)) == 1  # a whole vector per row: the rows' kernel is fast
    assert fused.class_dim(torch.empty(8, 10)) == 1  # too few logits to pay for the transposed view
    assert fused.class_dim(torch.empty(64, 10, device="meta")) == 1  # CPU only
    monkeypatch.setattr(fused, "_short_row_classes", lambda: 0)  # no known vector width: rows
    assert fused.class_dim(torch.empty(4096, 2)) == 1


def test_second_derivatives_are_exact():
    logits = torch.randn(6, 4, dtype=torch.float64, requires_grad=True)
    target = torch.randint(0, 4, (6,))
    assert fused.applies(logits, target, 2.0, 2.0, None, 0.0, RF.IGNORE_INDEX)
    torch.autograd.gradcheck(lambda x: rlo.rooted_cross_entropy(x, target, k=2.0), (logits,))
    torch.autograd.gradgradcheck(lambda x: rlo.rooted_cross_entropy(x, target, k=2.0), (logits,))


def test_it_steps_aside_for_every_other_call():
    logits, target = torch.randn(5, 3), torch.tensor([0, 1, 2, 1, 0])
    assert fused.applies(logits, target, 3.0, 3.0, None, 0.0, RF.IGNORE_INDEX)
    others = {
        "class weight": dict(weight=torch.ones(3)),
        "smoothing": dict(label_smoothing=0.1),
        "tensor k": dict(k=torch.tensor(3.0)),
        "ignore_index in range": dict(ignore_index=1),
        "int32 target": dict(target=target.int()),
        "float16 logits": dict(logits=logits.half()),
        "spatial logits": dict(logits=logits.view(5, 3, 1), target=target.view(5, 1)),
        "empty batch": dict(logits=logits[:0], target=target[:0]),
    }
    for case, change in others.items():
        call = dict(logits=logits, target=target, k=3.0, m=3.0, weight=None, label_smoothing=0.0, ignore_index=-100)
        call.update(change)
        assert not fused.applies(**call), case


@pytest.mark.parametrize("loss_fn", [rlo.cross_entropy, lambda x, t: rlo.rooted_cross_entropy(x, t, k=2.0)])
def test_out_of_range_indices_are_still_refused_by_name(loss_fn):
    with pytest.raises(ValueError, match=r"class index out of range \[0, 3\): found \[7\]"):
        loss_fn(torch.randn(2, 3), torch.tensor([0, 7]))


@pytest.mark.parametrize("form", ["eq4", "eq9"])
def test_ignored_samples_refused_by_the_cpu_kernel_are_left_out_by_the_general_path(form):
    logits, target = torch.randn(5, 3, dtype=torch.float64), torch.tensor([0, 1, -100, 1, 0])
    assert fused.applies(logits, target, 3.0, 3.0, None, 0.0, RF.IGNORE_INDEX)  # on CPU the indices are not read
    (fast, fast_grad), (slow, slow_grad) = both(logits, target, 3.0, 3.0, form, "mean")
    (kept, kept_grad), _ = both(logits[target >= 0], target[target >= 0], 3.0, 3.0, form, "mean")
    torch.testing.assert_close(fast, slow, rtol=1e-12, atol=0)
    torch.testing.assert_close(fast, kept, rtol=1e-12, atol=0)
    torch.testing.assert_close(fast_grad, slow_grad, rtol=1e-12, atol=0)
    assert (fast_grad[2] == 0).all()
    x = logits.float()
    torch.testing.assert_close(rlo.cross_entropy(x, target), F.cross_entropy(x, target), rtol=0, atol=0)


def test_ce_is_torch_cross_entropy_on_the_common_call():
    logits = torch.randn(8, 5, requires_grad=True)
    target = torch.randint(0, 5, (8,))
    torch.testing.assert_close(rlo.cross_entropy(logits, target), F.cross_entropy(logits, target), rtol=0, atol=0)


def test_scalar_factors_first_made_under_inference_mode_still_serve_training():
    fused._constant.cache_clear()
    logits, target = torch.randn(64, 10), torch.randint(0, 10, (64,))
    with torch.inference_mode():
        evaluated = rlo.rooted_cross_entropy(logits, target, k=3.25)
    x = logits.clone().requires_grad_(True)
    loss = rlo.rooted_cross_entropy(x, target, k=3.25)
    loss.backward()
    torch.testing.assert_close(loss.detach(), evaluated)
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
