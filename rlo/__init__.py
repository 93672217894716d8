"""The rooted logistic objective (RLO, arXiv 2310.03890) and its peers, in one loss family.

Quick use::

    import rlo
    criterion = rlo.RootedLoss(k=3)            # drop-in for nn.CrossEntropyLoss, eq. 4 with m = k
    loss = criterion(logits, target)
    loss = rlo.rooted_logistic(z, y, k=11)     # binary, y in {0, 1} or {-1, +1}
    criterion = rlo.get_loss("focal", gamma=3) # switch family members by name
    cfg = rlo.LossConfig.parse("rlo-eq9-k3")   # or by label; cfg.describe() == "rlo-eq9-k3"

The members are registered once, in :mod:`rlo.registry`; ``rlo.LOSS_NAMES`` lists them (for CLI choices).
"""

from rlo.family import (
    FamilyLoss,
    LossConfig,
    RootedBCEWithLogitsLoss,
    RootedLoss,
    binary_loss,
    classification_loss,
    get_loss,
)
from rlo.functional import (
    binary_focal_loss,
    binary_hinge_loss,
    binary_unhinged_loss,
    class_loss,
    cross_entropy,
    eq4_exponent_cap,
    focal_loss,
    hinge_loss,
    logistic,
    nll_binary_loss,
    nll_class_loss,
    rooted_binary_cross_entropy_with_logits,
    rooted_cross_entropy,
    rooted_from_nll,
    rooted_logistic,
    unhinged_loss,
)
from rlo.gan import PAIRINGS, GanObjective
from rlo.registry import LOSS_NAMES, LossMember, loss_names
from rlo.registry import register as register_loss

__all__ = [
    "LOSS_NAMES",
    "LossConfig",
    "FamilyLoss",
    "RootedLoss",
    "RootedBCEWithLogitsLoss",
    "rooted_binary_cross_entropy_with_logits",
    "GanObjective",
    "get_loss",
    "binary_loss",
    "classification_loss",
    "rooted_logistic",
    "rooted_cross_entropy",
    "rooted_from_nll",
    "eq4_exponent_cap",
    "cross_entropy",
    "logistic",
    "focal_loss",
    "binary_focal_loss",
    "unhinged_loss",
    "binary_unhinged_loss",
    "class_loss",
    "nll_class_loss",
    "nll_binary_loss",
    "LossMember",
    "loss_names",
    "register_loss",
    "hinge_loss",
    "binary_hinge_loss",
    "PAIRINGS",
]
