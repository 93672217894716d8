"""Bounds on network kwargs from files: the element count equals built networks, every kwarg has a bound, the
configs train.py makes pass, and kwargs mismatches are described in one line."""

from __future__ import annotations

import pytest
import torch

from training import network_bounds, options
from training.augment import AUGPIPE_SPECS, AugmentPipe
from training.network_bounds import KwargsError, check_init_kwargs, describe_kwargs_mismatch
from training.networks import Discriminator, Generator

G_BASE = dict(
    z_dim=8,
    c_dim=0,
    w_dim=8,
    img_resolution=16,
    img_channels=3,
    mapping_kwargs=dict(num_layers=2),
    synthesis_kwargs=dict(channel_base=128, channel_max=16),
)
D_BASE = dict(c_dim=0, img_resolution=16, img_channels=3, channel_base=128, channel_max=16)

G_VARIANTS = [
    {},
    dict(c_dim=3),
    dict(z_dim=0, c_dim=5, mapping_kwargs=dict(num_layers=3, embed_features=5, layer_features=7, w_avg_beta=None)),
    dict(img_channels=1, img_resolution=4),
    dict(
        img_resolution=32,
        synthesis_kwargs=dict(
            channel_base=256,
            channel_max=8,
            architecture="resnet",
            num_fp16_res=2,
            conv_clamp=256,
            fp16_channels_last=True,
        ),
    ),
    dict(
        synthesis_kwargs=dict(
            channel_base=64,
            channel_max=32,
            architecture="orig",
            kernel_size=5,
            use_noise=False,
            resample_filter=[1, 2, 3, 4, 5, 6, 7, 8, 9],
            activation="relu",
        )
    ),
    dict(synthesis_kwargs=dict(channel_base=128, channel_max=16, resample_filter=[1, 1])),
]
D_VARIANTS = [
    {},
    dict(c_dim=3),
    dict(c_dim=4, cmap_dim=6, mapping_kwargs=dict(num_layers=2, layer_features=3, embed_features=2)),
    dict(architecture="skip", img_channels=2, block_kwargs=dict(resample_filter=[1, 2, 1], freeze_layers=2)),
    dict(architecture="orig", img_resolution=8, epilogue_kwargs=dict(mbstd_group_size=None, mbstd_num_channels=0)),
    dict(
        img_resolution=32,
        channel_base=512,
        channel_max=32,
        num_fp16_res=2,
        conv_clamp=256,
        epilogue_kwargs=dict(mbstd_num_channels=2, activation="linear"),
        block_kwargs=dict(fp16_channels_last=True),
    ),
]


def merged(base, variant):
    out = dict(base, **variant)
    for key in ("mapping_kwargs", "synthesis_kwargs"):
        if key in base and key in variant:
            out[key] = dict(base[key], **variant[key])
    return out


def elements(module):
    return sum(t.numel() for t in module.state_dict().values())


@pytest.mark.parametrize("variant", G_VARIANTS)
def test_generator_element_count_equals_the_built_network(variant):
    kwargs = merged(G_BASE, variant)
    assert check_init_kwargs("Generator", kwargs, "x") == elements(Generator(**kwargs))


@pytest.mark.parametrize("variant", D_VARIANTS)
def test_discriminator_element_count_equals_the_built_network(variant):
    kwargs = merged(D_BASE, variant)
    assert check_init_kwargs("Discriminator", kwargs, "x") == elements(Discriminator(**kwargs))


def test_cifar_networks_pass_with_their_official_parameter_counts():
    G_kwargs, D_kwargs = options.network_kwargs(options.CFG_SPECS["cifar"], resolution=32, channels=3, c_dim=0)
    params = dict(
        G=sum(p.numel() for p in Generator(**G_kwargs).parameters()),
        D=sum(p.numel() for p in Discriminator(**D_kwargs).parameters()),
    )
    assert params == dict(G=19_947_539, D=20_720_641)  # the official counts (README)
    assert check_init_kwargs("Generator", G_kwargs, "x") == elements(Generator(**G_kwargs))


@pytest.mark.parametrize("cfg", sorted(options.CFG_SPECS))
@pytest.mark.parametrize("resolution", [32, 256, 1024])
def test_every_train_py_config_passes_the_bounds(cfg, resolution):
    for c_dim in (0, 1000):
        G_kwargs, D_kwargs = options.network_kwargs(options.CFG_SPECS[cfg], resolution, 3, c_dim, nhwc=True, freezed=4)
        assert 0 < check_init_kwargs("Generator", G_kwargs, "x") < network_bounds.MAX_NETWORK_ELEMENTS
        assert 0 < check_init_kwargs("Discriminator", D_kwargs, "x") < network_bounds.MAX_NETWORK_ELEMENTS


def test_a_config_cbase_below_the_resolution_is_raised_to_one_channel_at_the_output():
    G_kwargs, D_kwargs = options.network_kwargs(options.CFG_SPECS["tiny"], 1024, 3, 0)
    assert G_kwargs["synthesis_kwargs"]["channel_base"] == D_kwargs["channel_base"] == 1024
    G_kwargs, D_kwargs = options.network_kwargs(options.CFG_SPECS["tiny"], 32, 3, 0)
    assert G_kwargs["synthesis_kwargs"]["channel_base"] == D_kwargs["channel_base"] == options.CFG_SPECS["tiny"].cbase


def test_every_accepted_kwarg_has_a_bound():
    for class_name in network_bounds.CLASSES:
        for key in network_bounds.accepted_kwargs(class_name):
            assert network_bounds._bound(class_name, key) is not None or (class_name, key) in network_bounds._FORWARDED
    for class_name, nested in network_bounds._FORWARDED:
        for key in network_bounds.accepted_kwargs(class_name, nested):
            assert key in network_bounds.BOUNDS and network_bounds.BOUNDS[key] is not None, (nested, key)


@pytest.mark.parametrize("class_name, nested", sorted(network_bounds._FORWARDED))
def test_every_accepted_nested_kwarg_reaches_a_constructor(class_name, nested):
    """Set to its default, each accepted kwarg of a forwarded dict builds (no 'multiple values' clash) and passes."""
    base, cls = (G_BASE, Generator) if class_name == "Generator" else (D_BASE, Discriminator)
    for key, param in network_bounds.accepted_kwargs(class_name, nested).items():
        value = list(param.default) if isinstance(param.default, tuple) else param.default
        kwargs = merged(base, {nested: {**base.get(nested, {}), key: value}})
        assert check_init_kwargs(class_name, kwargs, "x") == elements(cls(**kwargs)), (nested, key)


def test_augment_pipe_kwargs_are_bounded():
    assert check_init_kwargs("AugmentPipe", AUGPIPE_SPECS["bgcfnc"], "x") is None
    AugmentPipe(**AUGPIPE_SPECS["bgcfnc"])
    for bad in (
        dict(xflip=-1),
        dict(rotate=float("nan")),
        dict(imgfilter_bands=[1, 1]),
        dict(scale="1"),
        dict(frobnicate=1),
    ):
        with pytest.raises(KwargsError, match=rf"^f\.pt\['augment_pipe'\]: .*{next(iter(bad))}"):
            check_init_kwargs("AugmentPipe", bad, "f.pt['augment_pipe']")


def test_missing_required_kwargs_are_named():
    with pytest.raises(KwargsError, match=r"missing kwargs \['z_dim'\]"):
        check_init_kwargs("Generator", {k: v for k, v in G_BASE.items() if k != "z_dim"}, "x")


def test_the_element_limit_is_enforced_exactly(monkeypatch):
    count = check_init_kwargs("Generator", G_BASE, "x")
    monkeypatch.setattr(network_bounds, "MAX_NETWORK_ELEMENTS", count)
    check_init_kwargs("Generator", G_BASE, "x")
    monkeypatch.setattr(network_bounds, "MAX_NETWORK_ELEMENTS", count - 1)
    with pytest.raises(KwargsError, match=rf"describe {count:,} parameter and buffer elements, more than the limit"):
        check_init_kwargs("Generator", G_BASE, "x")


def test_kwargs_mismatch_is_one_line_with_resolution_and_channels_first():
    run = merged(G_BASE, dict(img_resolution=32, c_dim=10, synthesis_kwargs=dict(channel_base=256, channel_max=16)))
    text = describe_kwargs_mismatch(G_BASE, run, "Generator")
    assert text == "img_resolution 16 (saved) vs 32 (run); c_dim 0 vs 10; synthesis_kwargs.channel_base 128 vs 256"
    assert describe_kwargs_mismatch(G_BASE, G_BASE) == ""


def test_kwargs_mismatch_counts_omitted_kwargs_as_their_defaults():
    explicit = dict(D_BASE, architecture="resnet", block_kwargs=dict(freeze_layers=0), mapping_kwargs={})
    assert describe_kwargs_mismatch(D_BASE, explicit, "Discriminator") == ""
    assert (
        describe_kwargs_mismatch(D_BASE, explicit)
        == "architecture <absent> (saved) vs 'resnet' (run); block_kwargs.freeze_layers <absent> vs 0"
    )
    assert (
        describe_kwargs_mismatch(D_BASE, dict(D_BASE, architecture="skip"), "Discriminator")
        == "architecture 'resnet' (saved) vs 'skip' (run)"
    )


def test_default_mapping_of_a_generator_is_counted_with_eight_layers():
    kwargs = {k: v for k, v in G_BASE.items() if k != "mapping_kwargs"}
    torch.manual_seed(0)
    assert check_init_kwargs("Generator", kwargs, "x") == elements(Generator(**kwargs))
