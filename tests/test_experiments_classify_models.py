"""Classifier models: every --model builds (at tiny width, through timm's own kwargs) and runs a forward and a
backward pass on the CPU; the 32 px adaptations are what the module says; pretrained files load all but the head,
and a missing file, a file for another model or a missing timm give the named one-line errors."""

import sys

import pytest
import torch
from click.testing import CliRunner

from experiments import classifier_models as cm
from experiments import classify

# timm kwargs that shrink each family to a few thousand parameters (the architecture code is the real one)
TINY = {
    "resnet": dict(channels=(4, 8, 8, 8), stem_width=4),
    "vit": dict(embed_dim=16, depth=1, num_heads=2),
    "swin": dict(embed_dim=8, depths=(1, 1, 1, 1), num_heads=(1, 1, 1, 1)),
    "cnn": {},
}


def _tiny(name, in_channels=3, classes=10, size=32, **extra):
    spec = cm.MODELS[name]
    kwargs = dict(TINY[spec.family], **extra) if name not in ("resnet-tiny", "vit-tiny") else extra
    return cm.make_classifier(name, in_channels, classes, size, **kwargs)


@pytest.mark.parametrize("name", cm.MODEL_NAMES)
def test_every_model_maps_32px_images_to_logits_and_backpropagates(name):
    net = _tiny(name)  # tiny width, the model's real depth
    x = torch.randn(2, 3, 32, 32)
    logits = net(x)
    assert logits.shape == (2, 10)
    logits.square().mean().backward()
    grads = [p.grad for p in net.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)


@pytest.mark.parametrize("name", ["resnet18", "vit-s", "swin-t"])
def test_224px_models_take_the_imagenet_design(name):
    net = _tiny(name, size=224, **({"layers": (1, 1, 1, 1)} if name == "resnet18" else {}))
    assert net(torch.randn(1, 3, 224, 224)).shape == (1, 10)
    if name == "resnet18":
        assert net.conv1.kernel_size == (7, 7) and net.conv1.stride == (2, 2)
    if name == "vit-s":
        assert net.patch_embed.patch_size == (16, 16)


def test_small_inputs_get_the_cifar_adaptations():
    resnet = _tiny("resnet50", layers=(1, 1, 1, 1))
    assert resnet.conv1.kernel_size == (3, 3) and resnet.conv1.stride == (1, 1)
    assert isinstance(resnet.maxpool, torch.nn.Identity)
    vit = _tiny("vit-b")
    assert vit.patch_embed.patch_size == (4, 4) and vit.patch_embed.num_patches == 64
    assert _tiny("vit-b", size=64).patch_embed.patch_size == (8, 8)
    swin = _tiny("swin-b")
    assert swin.patch_embed.patch_size == (2, 2)
    assert [tuple(layer.blocks[0].window_size) for layer in swin.layers] == [(4, 4), (4, 4), (4, 4), (2, 2)]
    assert _tiny("vit-tiny", in_channels=1)(torch.randn(3, 1, 32, 32)).shape == (3, 10)


def test_full_size_models_have_the_papers_parameter_counts():
    # Table 3: ViT-B 85.1M; the CIFAR ResNets (kuangliu's) have these counts at 10 classes
    counts = {name: cm.parameter_count(cm.make_classifier(name, 3, 10, 32)) for name in ("vit-b", "resnet34")}
    assert round(counts["vit-b"] / 1e6, 1) == 85.2 and round(counts["resnet34"] / 1e6, 1) == 21.3


def test_same_seed_same_initial_weights():
    def build(seed):
        torch.manual_seed(seed)
        return _tiny("vit-s").state_dict()

    a, b, c = build(1), build(1), build(2)
    assert all(torch.equal(a[k], b[k]) for k in a) and not torch.equal(a["head.weight"], c["head.weight"])


def test_unknown_model_is_named():
    with pytest.raises(ValueError, match="'vgg'"):
        cm.make_classifier("vgg", 3, 10)


# ---------------------------------------------------------------- pretrained files


def _perturbed(net, seed=9):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for t in net.state_dict().values():
            if t.is_floating_point():
                t.add_(torch.randn(t.shape, generator=gen))
    return net


@pytest.mark.parametrize("suffix", [".pth", ".safetensors", ".bin"])
def test_pretrained_file_loads_everything_but_the_head(tmp_path, suffix):
    source = _perturbed(_tiny("resnet18", classes=1000, layers=(1, 1, 1, 1)))
    path = tmp_path / f"resnet18{suffix}"
    state = source.state_dict()
    if suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    elif suffix == ".bin":  # a DataParallel save inside {'state_dict': ...}
        torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}, "epoch": 3}, path)
    else:
        torch.save(state, path)
    torch.manual_seed(0)
    net = _tiny("resnet18", classes=7, layers=(1, 1, 1, 1))
    fresh_head = net.fc.weight.clone()
    line = cm.load_pretrained(net, str(path), "resnet18")
    assert "fc.bias, fc.weight" in line and "re-initialised for 7 classes" in line and str(path) in line
    loaded = net.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in state.items() if not k.startswith("fc."))
    assert torch.equal(net.fc.weight, fresh_head) and net.fc.weight.shape == (7, 8)


def test_a_missing_pretrained_file_is_named(tmp_path):
    with pytest.raises(cm.PretrainedError, match=r"--pretrained: no such file '.*nothing\.pth'"):
        cm.load_pretrained(_tiny("vit-s"), str(tmp_path / "nothing.pth"), "vit-s")


def test_a_file_for_another_model_names_the_file_and_the_model(tmp_path):
    path = tmp_path / "resnet.pth"
    torch.save(_tiny("resnet18", layers=(1, 1, 1, 1)).state_dict(), path)
    with pytest.raises(cm.PretrainedError) as err:
        cm.load_pretrained(_tiny("vit-s"), str(path), "vit-s")
    message = str(err.value)
    assert str(path) in message and "--model vit-s (timm vit_small_patch16_224, VisionTransformer)" in message
    assert "missing keys: blocks.0.attn.proj.bias" in message and "unexpected keys: bn1.bias" in message


def test_a_file_for_another_input_size_names_the_shape_mismatch(tmp_path):
    path = tmp_path / "vit224.pth"
    torch.save(_tiny("vit-s", size=224).state_dict(), path)
    with pytest.raises(
        cm.PretrainedError,
        match=r"shape mismatches: .*pos_embed: file \[1, 197, 16\] vs model "
        r"\[1, 65, 16\].*--image-size 224",
    ):
        cm.load_pretrained(_tiny("vit-s"), str(path), "vit-s")


def test_a_file_that_is_not_a_checkpoint_is_named(tmp_path):
    path = tmp_path / "notes.pth"
    path.write_text("not a checkpoint")
    with pytest.raises(cm.PretrainedError, match=r"--pretrained .*notes\.pth: cannot read it as a checkpoint"):
        cm.load_pretrained(_tiny("vit-s"), str(path), "vit-s")


def test_a_pickled_object_is_refused_in_one_line_without_torchs_advice_to_run_it(tmp_path):
    """torch's weights_only error suggests weights_only=False, which would run the file's code: never passed on."""
    path = tmp_path / "object.pth"
    torch.save({"model": cm.PretrainedError("a class, not tensors")}, path)
    with pytest.raises(cm.PretrainedError) as err:
        cm.load_pretrained(_tiny("vit-s"), str(path), "vit-s")
    message = str(err.value)
    assert "\n" not in message and "weights_only" not in message and "never loaded as code" in message


def test_the_cli_stops_on_a_pretrained_file_for_another_model(tmp_path):
    path = tmp_path / "small.pth"
    torch.save(cm.make_classifier("small-cnn", 1, 10).state_dict(), path)
    result = CliRunner().invoke(
        classify.main,
        [
            "--model",
            "vit-tiny",
            "--pretrained",
            str(path),
            "--max-images",
            "20",
            "--epochs",
            "0",
            "--seeds",
            "1",
            "--losses",
            "ce",
            "--device",
            "cpu",
            "--out",
            str(tmp_path / "out"),
        ],
        catch_exceptions=False,
    )
    assert result.exit_code == 2
    error = result.stderr.strip().splitlines()[-1]
    assert str(path) in error and "does not fit --model vit-tiny" in error and not (tmp_path / "out").exists()


def test_fine_tuning_from_a_file_announces_the_new_head(tmp_path):
    path = tmp_path / "vit.pth"
    torch.save(_perturbed(cm.make_classifier("vit-tiny", 1, 1000)).state_dict(), path)
    result = CliRunner().invoke(
        classify.main,
        [
            "--model",
            "vit-tiny",
            "--pretrained",
            str(path),
            "--max-images",
            "20",
            "--epochs",
            "1",
            "--seeds",
            "1",
            "--losses",
            "ce",
            "--device",
            "cpu",
            "--out",
            str(tmp_path / "out"),
        ],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    assert "classifier head (head.bias, head.weight) re-initialised for 10 classes" in result.stderr
    assert f"fine-tuned from {path}" in (tmp_path / "out" / "classify_digits_vit-tiny.md").read_text()


def test_without_timm_a_timm_model_is_one_line_naming_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "timm", None)  # import timm now raises ImportError
    with pytest.raises(cm.MissingExtraError, match=r"pip install -r requirements-extras.txt"):
        cm.make_classifier("resnet18", 3, 10)
    assert cm.make_classifier("small-cnn", 3, 10)(torch.randn(1, 3, 32, 32)).shape == (1, 10)
    result = CliRunner().invoke(classify.main, ["--model", "resnet-tiny", "--out", str(tmp_path / "out")])
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines() == [
        "Error: the timm models need timm: pip install -r requirements-extras.txt"
    ]
