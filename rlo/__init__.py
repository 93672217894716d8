"""The rooted logistic objective (RLO, arXiv 2310.03890) and its peers, in one loss family.

Quick use::

    import rlo
    criterion = rlo.RootedLoss(k=3)            # drop-in for nn.CrossEntropyLoss, eq. 4 with m = k
    loss = criterion(logits, target)
    loss = rlo.rooted_logistic(z, y, k=11)     # binary, y in {0, 1} or {-1, +1}
    criterion = rlo.get_loss("focal", gamma=3) # switch family members by name
"""
from rlo.family import LOSS_NAMES, FamilyLoss, LossConfig, RootedLoss, binary_loss, classification_loss, get_loss
from rlo.functional import (binary_focal_loss, binary_unhinged_loss, cross_entropy, eq4_exponent_cap, focal_loss,
                            logistic, rooted_cross_entropy, rooted_from_nll, rooted_logistic, unhinged_loss)
from rlo.gan import GanObjective

__all__ = [
    "LOSS_NAMES", "LossConfig", "FamilyLoss", "RootedLoss", "GanObjective", "get_loss", "binary_loss",
    "classification_loss", "rooted_logistic", "rooted_cross_entropy", "rooted_from_nll", "eq4_exponent_cap",
    "cross_entropy", "logistic", "focal_loss", "binary_focal_loss", "unhinged_loss", "binary_unhinged_loss",
]
