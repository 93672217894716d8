"""The losses under torch.compile(fullgraph=True): one graph, no host reads (the eager backend: no compiler needed).
Input checks that need host values run in eager mode only."""

import pytest
import torch

import rlo
from rlo import functional as RF

X = torch.randn(64, 10, generator=torch.Generator().manual_seed(0))
Y = torch.randint(0, 10, (64,), generator=torch.Generator().manual_seed(1))
SOFT = torch.softmax(torch.randn(64, 10, generator=torch.Generator().manual_seed(2)), 1)
Z = torch.randn(64, generator=torch.Generator().manual_seed(3))
B = (torch.rand(64, generator=torch.Generator().manual_seed(4)) > 0.5).float()
D = torch.randn(16, 1, generator=torch.Generator().manual_seed(5))

CASES = {
    "RootedLoss, indices": (rlo.RootedLoss(k=3.0), (X, Y)),
    "RootedLoss, probabilities": (rlo.RootedLoss(k=3.0), (X, SOFT)),
    "RootedLoss eq9, weights, smoothing": (
        rlo.RootedLoss(k=3.0, form="eq9", weight=torch.linspace(0.5, 2, 10), label_smoothing=0.1),
        (X, Y),
    ),
    "rooted_logistic": (lambda z, t: RF.rooted_logistic(z, t, k=2.0), (Z, B)),
    "GanObjective g_fake": (lambda d: rlo.GanObjective(rlo.LossConfig("rlo", k=2.0)).g_fake(d).mean(), (D,)),
    "GanObjective relativistic d": (
        lambda a, b: rlo.GanObjective(rlo.LossConfig("rlo", k=2.0), "relativistic").d_relativistic(a, b).mean(),
        (D, D.flip(0)),
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_fullgraph_compile_gives_the_eager_value_and_gradient(name):
    fn, args = CASES[name]
    torch._dynamo.reset()
    compiled = torch.compile(fn, backend="eager", fullgraph=True)
    leaf = args[0].clone().requires_grad_(True)
    eager_leaf = args[0].clone().requires_grad_(True)
    got, want = compiled(leaf, *args[1:]), fn(eager_leaf, *args[1:])
    torch.testing.assert_close(got, want)
    (g,) = torch.autograd.grad(got, leaf)
    (w,) = torch.autograd.grad(want, eager_leaf)
    torch.testing.assert_close(g, w)


def test_eager_calls_still_check_the_targets():
    with pytest.raises(ValueError, match="class index out of range"):
        rlo.RootedLoss(k=3.0)(X, torch.full((64,), 10))
    with pytest.raises(ValueError, match="binary target must hold only"):
        RF.rooted_logistic(Z, torch.full((64,), 2.0), k=2.0)


def test_modules_show_and_expose_their_members_own_parameters():
    loss = rlo.RootedLoss(k=3.0)
    assert (loss.k, loss.m) == (3.0, 3.0)  # m = k unless set
    assert repr(loss) == "RootedLoss('rlo', k=3.0, m=3.0, reduction='mean')"
    assert rlo.RootedLoss(k=2.0, m=5.0, form="eq9").m == 5.0
    focal = rlo.get_loss("focal")
    assert focal.gamma == 3.0 and "gamma=3.0, alpha=0.25" in repr(focal) and "k=" not in repr(focal)
    with pytest.raises(AttributeError):
        loss.gamma  # noqa: B018
    assert "gamma" not in repr(loss)
