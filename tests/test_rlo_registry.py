"""The registry of loss-family members: names, labels (describe/parse), dispatch, and that a new member is one entry."""

import dataclasses
import itertools
import json

import click
import pytest
import torch
import torch.nn.functional as F

import rlo
from rlo import functional as RF
from rlo import registry

K_VALUES = [0.5, 1, 2, 3.0, 11, 100, 2.123456789, 1e-05, 1.5e20]
M_VALUES = [None, 1, 5.0, 0.1, 3.0]
GAMMA_VALUES = [0, 0.5, 2, 3.0, 7.25]
ALPHA_VALUES = [None, 0, 0.25, 0.5, 1, 0.1 + 0.2]
VALUES = {"k": K_VALUES, "m": M_VALUES, "gamma": GAMMA_VALUES, "alpha": ALPHA_VALUES}


def configs_of(name):
    """Every combination of the parameters the member takes (the others at odd values: they must not matter)."""
    params = registry.get_member(name).params
    for values in itertools.product(*(VALUES[p] for p in params)):
        yield rlo.LossConfig(name, **dict(zip(params, values)))


# ---------------------------------------------------------------------------------------------------------------
# Names.


def test_loss_names_are_the_registry_in_order_and_serve_as_cli_choices():
    assert rlo.LOSS_NAMES == tuple(member.name for member in registry.MEMBERS)
    assert rlo.LOSS_NAMES == ("ce", "focal", "rlo", "rlo-eq9", "unhinged", "hinge")
    assert len(rlo.LOSS_NAMES) == 6 and rlo.LOSS_NAMES[2] == "rlo" and "rlo-eq9" in rlo.LOSS_NAMES
    assert "squared-hinge" not in rlo.LOSS_NAMES and ", ".join(rlo.LOSS_NAMES).startswith("ce, focal")
    choice = click.Choice(rlo.LOSS_NAMES)
    assert choice.convert("rlo", None, None) == "rlo"
    with pytest.raises(click.BadParameter):
        choice.convert("squared-hinge", None, None)
    assert rlo.loss_names("binary") == rlo.loss_names("multiclass") == tuple(rlo.LOSS_NAMES)
    with pytest.raises(ValueError, match="task"):
        rlo.loss_names("regression")


def test_label_codes_cover_exactly_the_loss_config_parameters():
    fields = {field.name for field in dataclasses.fields(rlo.LossConfig)} - {"name"}
    assert set(registry.LABEL_CODES) == fields
    assert len(set(registry.LABEL_CODES.values())) == len(fields)


# ---------------------------------------------------------------------------------------------------------------
# describe and parse.


@pytest.mark.parametrize("name", registry.loss_names())
def test_parse_inverts_describe_for_every_member_and_parameter_value(name):
    labels = set()
    for cfg in configs_of(name):
        label = cfg.describe()
        parsed = rlo.LossConfig.parse(label)
        assert parsed == cfg and parsed.parameters() == cfg.parameters(), label
        assert parsed.describe() == label
        labels.add(label)
    assert len(labels) == len(list(configs_of(name)))  # distinct configs, distinct labels


@pytest.mark.parametrize(
    "cfg,label",
    [
        (rlo.LossConfig("ce"), "ce"),
        (rlo.LossConfig("ce", k=2.0), "ce"),  # the GAN default: k is carried but ce does not take it
        (rlo.LossConfig("rlo", k=2), "rlo-k2"),
        (rlo.LossConfig("rlo", k=3), "rlo-k3"),  # k is always spelled, even at its default
        (rlo.LossConfig("rlo", k=3, m=5), "rlo-k3-m5"),
        (rlo.LossConfig("rlo-eq9", k=3, m=5), "rlo-eq9-k3-m5"),
        (rlo.LossConfig("rlo", k=2.5, m=3), "rlo-k2.5-m3"),
        (rlo.LossConfig("focal"), "focal"),
        (rlo.LossConfig("focal", gamma=2, alpha=0.5), "focal-g2-a0.5"),
        (rlo.LossConfig("focal", gamma=2), "focal-g2"),
        (rlo.LossConfig("focal", alpha=None), "focal-anone"),
        (rlo.LossConfig("unhinged", k=7), "unhinged"),
        (rlo.LossConfig("rlo", k=1e-5), "rlo-k1e-05"),
        (rlo.LossConfig("rlo", k=2.123456789), "rlo-k2.123456789"),
    ],
)
def test_labels_are_the_documented_spellings(cfg, label):
    assert cfg.describe() == label
    assert rlo.LossConfig.parse(label) == cfg


@pytest.mark.parametrize(
    "label,cfg",
    [
        ("rlo-5", rlo.LossConfig("rlo", k=5)),
        ("rlo-2.5", rlo.LossConfig("rlo", k=2.5)),
        ("rlo-eq9-3", rlo.LossConfig("rlo-eq9", k=3)),
        ("rlo-5-m2", rlo.LossConfig("rlo", k=5, m=2)),
        ("rlo-m2-k5", rlo.LossConfig("rlo", k=5, m=2)),
        ("focal-a0.5-g2", rlo.LossConfig("focal", gamma=2, alpha=0.5)),
        ("rlo-k3-mnone", rlo.LossConfig("rlo", k=3)),
        (" rlo-k5 ", rlo.LossConfig("rlo", k=5)),
    ],
)
def test_parse_also_reads_the_aliases(label, cfg):
    assert rlo.LossConfig.parse(label) == cfg


@pytest.mark.parametrize(
    "label,message",
    [
        ("hinges", "unknown loss label 'hinges'"),
        ("RLO-k5", "unknown loss label"),
        ("", "unknown loss label"),
        ("rlo", "needs k<value>"),
        ("rlo-m5", "needs k<value>"),
        ("rlo-", "unknown part '-'"),
        ("rlo-k", "unknown part '-k'"),
        ("rlo-k0", "k must be a positive"),
        ("rlo-k5-k6", "repeated part '-k6'"),
        ("rlo-5-k6", "repeated part '-k6'"),
        ("ce-k3", "ce takes no parameters"),
        ("focal-3", "unknown part '-3'"),
        ("focal-k3", "unknown part '-k3'"),
        ("rlo-knone", "k must be a number"),
        ("focal-a2", "alpha must be"),
        ("rlo-k5x", "unknown part '-k5x'"),
        ("rlo-eq9-k-3", "unknown part"),
    ],
)
def test_parse_rejects_bad_labels_naming_them(label, message):
    with pytest.raises(ValueError, match=message):
        rlo.LossConfig.parse(label)
    with pytest.raises(TypeError, match="string"):
        rlo.LossConfig.parse(5)


def test_loss_config_json_of_earlier_runs_still_loads():
    stored = '{"name": "rlo", "k": 2.0, "m": null, "gamma": 3.0, "alpha": 0.25}'
    cfg = rlo.LossConfig.from_json(stored)
    assert cfg == rlo.LossConfig("rlo", k=2) and cfg.describe() == "rlo-k2"
    assert json.loads(cfg.to_json()) == json.loads(stored)
    default_gan = rlo.LossConfig.from_json('{"name": "ce", "k": 2.0, "m": null, "gamma": 3.0, "alpha": 0.25}')
    assert default_gan.k == 2.0 and json.loads(default_gan.to_json())["k"] == 2.0  # carried, though ce ignores it


def test_configs_are_equal_when_they_name_the_same_loss():
    assert rlo.LossConfig("ce", k=2) == rlo.LossConfig("ce") and hash(rlo.LossConfig("ce", k=2)) == hash(
        rlo.LossConfig("ce")
    )
    assert rlo.LossConfig("rlo", k=2, gamma=1) == rlo.LossConfig("rlo", k=2)
    assert rlo.LossConfig("rlo", k=2) != rlo.LossConfig("rlo", k=3)
    assert rlo.LossConfig("rlo", k=3, m=3) != rlo.LossConfig("rlo", k=3)  # m = None follows k; m = 3 does not
    assert rlo.LossConfig("rlo", k=3) != rlo.LossConfig("rlo-eq9", k=3)
    assert rlo.LossConfig("focal", k=1) == rlo.LossConfig("focal", k=9) != rlo.LossConfig("focal", gamma=1)
    assert len({rlo.LossConfig("ce", k=k) for k in K_VALUES}) == 1


# ---------------------------------------------------------------------------------------------------------------
# Dispatch.


@pytest.mark.parametrize("member", [m for m in registry.MEMBERS if m.from_nll is not None], ids=lambda m: m.name)
def test_members_with_an_nll_form_agree_with_their_binary_form(member):
    z = torch.randn(40, dtype=torch.float64) * 30  # reaches the eq4 cap
    y = torch.randint(0, 2, (40,))
    for cfg in configs_of(member.name):
        via_nll = member.from_nll(RF.binary_nll(z, y), input_dtype=z.dtype, **cfg.parameters())
        torch.testing.assert_close(via_nll, rlo.binary_loss(cfg, z, y, reduction="none"), rtol=1e-12, atol=0)


def test_binary_and_classification_loss_dispatch_to_the_registered_functions():
    z, y = torch.randn(9, dtype=torch.float64), torch.randint(0, 2, (9,))
    logits, target = torch.randn(9, 4, dtype=torch.float64), torch.randint(0, 4, (9,))
    p = torch.softmax(logits, 1).gather(1, target[:, None]).squeeze(1)
    s = (2 * y - 1).double()
    expected = {
        "ce": (F.softplus(-s * z), -torch.log(p)),
        "focal": (
            torch.where(y == 1, 0.25, 0.75) * (1 - torch.sigmoid(s * z)) ** 3 * F.softplus(-s * z),
            0.25 * (1 - p) ** 3 * -torch.log(p),
        ),
        "rlo": (3 * (1 + torch.exp(-s * z)) ** (1 / 3), 3 * p ** (-1 / 3)),
        "rlo-eq9": (3 * (1 - (1 + torch.exp(-s * z)) ** (-1 / 3)), 3 * (1 - p ** (1 / 3))),
        "unhinged": (
            1 - s * z,
            1
            - (
                logits.gather(1, target[:, None]).squeeze(1)
                - (logits.sum(1) - logits.gather(1, target[:, None]).squeeze(1)) / 3
            ),
        ),
        "hinge": (
            F.relu(1 - s * z),
            F.relu(
                1
                + logits.scatter(1, target[:, None], -float("inf")).max(1).values
                - logits.gather(1, target[:, None]).squeeze(1)
            ),
        ),
    }
    assert set(expected) == set(rlo.LOSS_NAMES)
    for name, (binary, multiclass) in expected.items():
        cfg = rlo.LossConfig(name)
        torch.testing.assert_close(rlo.binary_loss(cfg, z, y, reduction="none"), binary)
        torch.testing.assert_close(rlo.classification_loss(cfg, logits, target, reduction="none"), multiclass)
        torch.testing.assert_close(rlo.get_loss(name)(logits, target), multiclass.mean())


# ---------------------------------------------------------------------------------------------------------------
# A new member is one entry: register it and everything else follows.


def _squared_nll_binary(logits, target, *, reduction="mean", gamma):
    """nll ** gamma: gamma = 1 is cross-entropy."""
    return RF.nll_binary_loss(logits, target, lambda nll: nll**gamma, reduction)


def _squared_nll_multiclass(logits, target, *, reduction="mean", gamma, **options):
    return RF.nll_class_loss(logits, target, lambda nll: nll**gamma, reduction, **options)


@pytest.fixture
def power_member():
    member = rlo.register_loss(
        rlo.LossMember(
            "nll-power", _squared_nll_binary, _squared_nll_multiclass, params=("gamma",), label_always=("gamma",)
        )
    )
    yield member
    registry.unregister("nll-power")


def test_a_registered_member_works_everywhere_with_no_other_edit(power_member):
    assert "nll-power" in rlo.LOSS_NAMES and rlo.LOSS_NAMES[-1] == "nll-power"
    assert click.Choice(rlo.LOSS_NAMES).convert("nll-power", None, None) == "nll-power"
    cfg = rlo.LossConfig("nll-power", gamma=2)
    assert cfg.describe() == "nll-power-g2"
    assert rlo.LossConfig.parse("nll-power-g2") == cfg == rlo.LossConfig.parse("nll-power-2")
    assert rlo.LossConfig.from_json(cfg.to_json()) == cfg
    with pytest.raises(ValueError, match="needs g<value>"):
        rlo.LossConfig.parse("nll-power")
    for gamma in GAMMA_VALUES:
        one = rlo.LossConfig("nll-power", gamma=gamma)
        assert rlo.LossConfig.parse(one.describe()) == one

    z, y = torch.randn(10, dtype=torch.float64), torch.randint(0, 2, (10,))
    torch.testing.assert_close(rlo.binary_loss(cfg, z, y), (F.softplus(-(2 * y - 1) * z) ** 2).mean())
    obj = rlo.GanObjective(cfg)
    torch.testing.assert_close(obj.d_real(z), F.softplus(-z) ** 2)
    torch.testing.assert_close(obj.d_fake(z), F.softplus(z) ** 2)

    logits, target = torch.randn(10, 4, dtype=torch.float64), torch.randint(0, 4, (10,))
    weight = torch.tensor([1.0, 2.0, 0.5, 1.0], dtype=torch.float64)
    ce = F.cross_entropy(logits, target, reduction="none")
    torch.testing.assert_close(rlo.get_loss("nll-power", gamma=2)(logits, target), (ce**2).mean())
    torch.testing.assert_close(
        rlo.classification_loss(cfg, logits, target, weight=weight),
        (weight[target] * ce**2).sum() / weight[target].sum(),
    )
    ce_like = rlo.LossConfig("nll-power", gamma=1)  # gamma = 1 is CE, with all of torch's options for free
    torch.testing.assert_close(
        rlo.classification_loss(ce_like, logits, target, weight=weight, label_smoothing=0.2),
        F.cross_entropy(logits, target, weight=weight, label_smoothing=0.2),
    )
    assert not rlo.LossConfig("nll-power", gamma=2).is_rooted


def test_a_removed_member_is_gone_everywhere(power_member):
    registry.unregister("nll-power")
    try:
        assert "nll-power" not in rlo.LOSS_NAMES
        with pytest.raises(ValueError, match="unknown loss 'nll-power'"):
            rlo.LossConfig("nll-power", gamma=2)
        with pytest.raises(ValueError, match="unknown loss label"):
            rlo.LossConfig.parse("nll-power-g2")
    finally:
        rlo.register_loss(power_member)


def test_a_member_without_a_binary_form_is_refused_by_binary_losses():
    member = rlo.register_loss(rlo.LossMember("multiclass-only", multiclass=RF.cross_entropy))
    try:
        cfg = rlo.LossConfig("multiclass-only")
        assert rlo.loss_names("binary") == ("ce", "focal", "rlo", "rlo-eq9", "unhinged", "hinge")
        assert "multiclass-only" in rlo.loss_names("multiclass")
        with pytest.raises(ValueError, match="no binary form; choose one of ce, focal"):
            rlo.binary_loss(cfg, torch.randn(3), 1)
        with pytest.raises(ValueError, match="binary form"):
            rlo.GanObjective(cfg)
        logits, target = torch.randn(3, 4), torch.randint(0, 4, (3,))
        torch.testing.assert_close(rlo.get_loss("multiclass-only")(logits, target), F.cross_entropy(logits, target))
    finally:
        registry.unregister(member.name)


@pytest.mark.parametrize(
    "name,message",
    [
        ("rlo", "registered already"),
        ("rlo-k2", "reads as a parameter"),
        ("focal-3", "lower-case words"),
        ("my-anone", "reads as a parameter"),
        ("Bad", "lower-case"),
        ("two--dashes", "lower-case"),
        ("", "lower-case"),
    ],
)
def test_register_refuses_names_that_would_make_labels_ambiguous(name, message):
    with pytest.raises(ValueError, match=message):
        rlo.register_loss(rlo.LossMember(name, RF.logistic, RF.cross_entropy))
    assert tuple(rlo.LOSS_NAMES) == tuple(member.name for member in registry.MEMBERS)


def test_register_refuses_unknown_parameters_and_empty_members():
    with pytest.raises(ValueError, match="params"):
        rlo.register_loss(rlo.LossMember("beta-loss", RF.logistic, params=("beta",)))
    with pytest.raises(ValueError, match="label_always"):
        rlo.register_loss(rlo.LossMember("beta-loss", RF.logistic, params=("k",), label_always=("m",)))
    with pytest.raises(ValueError, match="implementation"):
        rlo.register_loss(rlo.LossMember("beta-loss"))
    with pytest.raises(TypeError, match="LossMember"):
        rlo.register_loss("beta-loss")
    assert "beta-loss" not in rlo.LOSS_NAMES
