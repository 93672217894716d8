"""Detectors: exact weight-file layouts load strictly, match independent reference networks, never run file code,
and a missing file is a clear offline error."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import pickle
import zipfile

import metrics_support as ms
import numpy as np
import pytest
import torch
import torchvision
from click.testing import CliRunner

from commands import train_command
from metrics import detectors
from metrics.inception import InceptionV3, build_inception, convert_pytorch_fid_state, load_inception_state
from metrics.tf_resize import resize_like_tf1
from metrics.torchscript_reader import TorchScriptReadError, read_torchscript_tensors
from metrics.vgg16 import build_vgg16, has_lpips_weights
from metrics.weight_files import DetectorFormatError


@pytest.fixture(scope="module")
def fid_file():
    return ms.shared_fid_file()


@pytest.fixture(scope="module")
def fid_model(fid_file):
    return build_inception(fid_file[0])


def _images(n=2, size=48, seed=0):
    return torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


# ----------------------------------------------------------------------------
# TF1 resize.


def _tf1_resize_reference(img: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """tf.image.resize_bilinear(align_corners=False, half_pixel_centers=False) written out with loops."""
    _c, in_h, in_w = img.shape
    out = np.zeros((img.shape[0], out_h, out_w))
    for i in range(out_h):
        y = i * in_h / out_h
        y0 = int(np.floor(y))
        y1, fy = min(y0 + 1, in_h - 1), y - y0
        for j in range(out_w):
            x = j * in_w / out_w
            x0 = int(np.floor(x))
            x1, fx = min(x0 + 1, in_w - 1), x - x0
            top = img[:, y0, x0] * (1 - fx) + img[:, y0, x1] * fx
            bottom = img[:, y1, x0] * (1 - fx) + img[:, y1, x1] * fx
            out[:, i, j] = top * (1 - fy) + bottom * fy
    return out


@pytest.mark.parametrize("in_size,out_size", [(8, 29), (32, 24), (16, 16)])
def test_resize_like_tf1_matches_tf1_sampling_rule(in_size, out_size):
    img = torch.rand(1, 2, in_size, in_size, dtype=torch.float64) * 255
    ours = resize_like_tf1(img, out_size, out_size)[0].numpy()
    ref = _tf1_resize_reference(img[0].numpy(), out_size, out_size)
    np.testing.assert_allclose(ours, ref, atol=1e-6)


# ----------------------------------------------------------------------------
# Inception from pytorch-fid's state dict.


def test_pytorch_fid_file_matches_torchvision_fid_inception(fid_file, fid_model):
    """Our network == torchvision's Inception3 with pytorch-fid's FID patches, on the same preprocessed input."""
    _path, state = fid_file
    ref = ms.torchvision_fid_inception()
    ref.load_state_dict(state, strict=True)  # the file really has torchvision/pytorch-fid names
    fc = ref.fc
    ref.fc = torch.nn.Identity()
    img = _images(1)
    with torch.no_grad():
        x = fid_model.preprocess(img)
        ref_features = ref(x)
        features = fid_model(img, return_features=True)
        probs = fid_model(img)
        fid_model.output.bias.data += 1e3 * torch.arange(1008)  # huge bias: ignoring it must be visible
        probs_no_bias = fid_model(img, no_output_bias=True)
        fid_model.output.bias.data -= 1e3 * torch.arange(1008)
    assert features.shape == (1, 2048) and probs.shape == (1, 1008)
    scale = ref_features.abs().max()
    assert (features - ref_features).abs().max() <= 1e-5 * scale
    torch.testing.assert_close(probs, torch.softmax(fc(ref_features), dim=1), rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(probs_no_bias, torch.softmax(ref_features @ fc.weight.T, dim=1), rtol=1e-4, atol=1e-6)


def test_inception_preprocessing_is_tf_graph_scaling(fid_model):
    """(x - 128) / 128 after the TF1 resize to 299x299, as the 2015 graph's Sub/Mul nodes."""
    img = _images(1, 299)
    x = fid_model.preprocess(img)
    torch.testing.assert_close(x, (img.float() - 128) / 128)


def test_pytorch_fid_state_without_num_batches_tracked_converts(fid_file):
    state = {name: t for name, t in fid_file[1].items() if not name.endswith("num_batches_tracked")}
    assert len(state) < len(fid_file[1])
    ours = convert_pytorch_fid_state(state, "old.pth")
    assert set(ours) == set(InceptionV3().state_dict())


@pytest.mark.parametrize("change", ["missing", "unexpected", "shape"])
def test_pytorch_fid_file_with_wrong_keys_is_rejected_naming_the_key(tmp_path, fid_file, change):
    state = dict(fid_file[1])
    if change == "missing":
        del state["Mixed_7c.branch3x3dbl_3b.bn.running_var"]
        culprit = "Mixed_7c.branch3x3dbl_3b.bn.running_var"
    elif change == "unexpected":
        state["AuxLogits.fc.weight"] = torch.zeros(1008, 768)
        culprit = "AuxLogits.fc.weight"
    else:
        state["fc.weight"] = torch.zeros(1000, 2048)
        culprit = "fc.weight (1000, 2048) != (1008, 2048)"
    with pytest.raises(DetectorFormatError) as info:
        convert_pytorch_fid_state(state, "/somewhere/bad.pth")
    assert culprit in str(info.value) and "/somewhere/bad.pth" in str(info.value)


# ----------------------------------------------------------------------------
# Inception from StyleGAN2-ADA's TorchScript file.

# Names and shapes of StyleGAN2-ADA's inception-2015-12-05.pt, spot-checked against its published layout.
_STYLEGAN_INCEPTION_NAMES = {
    "layers.conv.weight": (32, 3, 3, 3),
    "layers.conv.beta": (32,),
    "layers.conv.mean": (32,),
    "layers.conv.var": (32,),
    "layers.conv_4.weight": (192, 80, 3, 3),
    "layers.mixed.tower_2.conv.weight": (32, 192, 1, 1),
    "layers.mixed_3.conv.weight": (384, 288, 3, 3),
    "layers.mixed_4.tower_1.conv_4.weight": (192, 128, 1, 7),
    "layers.mixed_8.tower_1.conv_3.weight": (192, 192, 3, 3),
    "layers.mixed_9.tower_1_mixed_conv_1.weight": (384, 384, 3, 1),
    "layers.mixed_10.tower_2_conv.var": (192,),
    "output.weight": (1008, 2048),
    "output.bias": (1008,),
}


def test_inception_names_match_stylegan_detector_layout():
    shapes = {name: tuple(t.shape) for name, t in InceptionV3().state_dict().items()}
    for name, shape in _STYLEGAN_INCEPTION_NAMES.items():
        assert shapes[name] == shape, name
    assert len([n for n in shapes if n.endswith(".weight") and n.startswith("layers.")]) == 94


class _ArchiveOf(torch.nn.Module):
    """A module holding another's parameters under the same names, with a cheap forward to trace."""

    def __init__(self, source: torch.nn.Module):
        super().__init__()
        for name, child in source.named_children():
            self.add_module(name, child)
        for name, param in source.named_parameters(recurse=False):
            self.register_parameter(name, param)

    def forward(self, x):
        return sum(p.sum() for p in self.parameters()) + x.sum()


def test_stylegan_torchscript_inception_loads_by_name(tmp_path, fid_model):
    path = str(tmp_path / "inception-2015-12-05.pt")
    ms.save_torchscript(_ArchiveOf(fid_model), torch.zeros(1), path)
    tensors = read_torchscript_tensors(path)
    assert list(tensors) == list(fid_model.state_dict())
    model = build_inception(path)
    for name, ref in fid_model.state_dict().items():
        assert torch.equal(tensors[name], ref) and torch.equal(model.state_dict()[name], ref), name


def test_torchscript_reader_refuses_globals_without_running_them(tmp_path):
    marker = tmp_path / "was_run"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    path = tmp_path / "evil.pt"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("evil/data.pkl", pickle.dumps(Payload(), protocol=2))
        archive.writestr("evil/code/__torch__.py", "pass\n")
    with pytest.raises(TorchScriptReadError, match="refusing"):
        read_torchscript_tensors(str(path))
    with pytest.raises(DetectorFormatError):
        load_inception_state(str(path))
    assert not marker.exists()


# ----------------------------------------------------------------------------
# VGG16 + LPIPS.


@pytest.fixture(scope="module")
def vgg_files():
    return ms.shared_vgg_files()


def test_vgg16_from_torchvision_matches_torchvision_vgg16(vgg_files):
    vgg_path, lpips_path, vgg_state, lpips_state = vgg_files
    ours = build_vgg16(vgg_path, lpips_path)
    ref = torchvision.models.vgg16(weights=None).eval()
    ref.load_state_dict(vgg_state, strict=True)
    img = _images(1, 40)
    with torch.no_grad():
        x = resize_like_tf1(img.float(), 224, 224) / 255
        x = torchvision.transforms.functional.normalize(x, [0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
        ref_features = ref.classifier[:5](torch.flatten(ref.avgpool(ref.features(x)), 1))
        torch.testing.assert_close(ours(img, return_features=True), ref_features, rtol=1e-4, atol=1e-4)

        # LPIPS (Zhang et al. 2018) written out: unit-normalise channels, weight, spatial mean, sum over layers.
        a, b = _images(1, 32, seed=1), _images(1, 32, seed=2)
        taps = {3, 8, 15, 22, 29}  # torchvision indices of relu1_2, relu2_2, relu3_3, relu4_3, relu5_3

        def tap_features(img):
            h = torchvision.transforms.functional.normalize(
                img.float() / 255, [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
            )
            out = []
            for index, layer in enumerate(ref.features):
                h = layer(h)
                if index in taps:
                    out.append(h / (h.norm(dim=1, keepdim=True) + 1e-10))
            return out

        expected = sum(
            (lpips_state[f"lin{i}.model.1.weight"] * (fa - fb).square()).sum(1).mean()
            for i, (fa, fb) in enumerate(zip(tap_features(a), tap_features(b)))
        )
        ea = ours(a, resize_images=False, return_lpips=True)
        eb = ours(b, resize_images=False, return_lpips=True)
        torch.testing.assert_close((ea - eb).square().sum(), expected, rtol=1e-4, atol=1e-7)


def test_vgg16_stylegan_torchscript_loads_by_name(tmp_path, vgg_files):
    model = build_vgg16(vgg_files[0], vgg_files[1])
    names = {name: tuple(t.shape) for name, t in model.state_dict().items()}
    assert names["layers.conv1.weight"] == (64, 3, 3, 3) and names["layers.conv13.weight"] == (512, 512, 3, 3)
    assert names["layers.fc1.weight"] == (4096, 25088) and names["lpips4"] == (512,)

    archive = _ArchiveOf(model)
    for i in range(5):  # LPIPS weights stored as [C, 1, 1], as some exports do
        setattr(archive, f"lpips{i}", torch.nn.Parameter(getattr(model, f"lpips{i}").view(-1, 1, 1).clone()))
    path = str(tmp_path / "vgg16.pt")
    ms.save_torchscript(archive, torch.zeros(1), path)
    loaded = build_vgg16(path)
    for name, ref in model.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[name], ref, rtol=0, atol=0)


def test_vgg16_without_lpips_file_cannot_be_used_for_lpips(vgg_files):
    model = build_vgg16(vgg_files[0])
    assert not has_lpips_weights(model)
    assert has_lpips_weights(build_vgg16(vgg_files[0], vgg_files[1]))


# ----------------------------------------------------------------------------
# Locating files offline.


@pytest.fixture
def isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("RLO_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("DNNLIB_CACHE_DIR", str(tmp_path / "dnnlib"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv("RLO_DETECTOR_DIR", raising=False)
    return tmp_path


def test_missing_detector_error_names_file_place_and_url(isolated_cache):
    with pytest.raises(detectors.DetectorNotFoundError) as info:
        detectors.locate_detector("inception")
    text = str(info.value)
    assert "inception-2015-12-05.pt" in text and "pt_inception-2015-12-05-6726825d.pth" in text
    assert "https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/metrics/inception-2015-12-05.pt" in text
    assert str(isolated_cache / "cache" / "detectors") in text and "RLO_DETECTOR_DIR" in text
    assert "Nothing is downloaded" in text


def test_missing_lpips_file_is_named_when_ppl_needs_it(isolated_cache, vgg_files):
    folder = isolated_cache / "dets"
    folder.mkdir()
    (folder / "vgg16-397923af.pth").write_bytes(open(vgg_files[0], "rb").read())
    assert detectors.locate_detector("vgg16", str(folder)).path == str(folder / "vgg16-397923af.pth")
    with pytest.raises(detectors.DetectorNotFoundError, match=r"vgg\.pth.*lpips/weights/v0\.1/vgg\.pth"):
        detectors.locate_detector("vgg16", str(folder), need_lpips=True)


def test_missing_vgg16_for_lpips_lists_both_routes_with_every_file(isolated_cache):
    with pytest.raises(detectors.DetectorNotFoundError) as info:
        detectors.locate_detector("vgg16", need_lpips=True, purpose="projector.py")
    text = str(info.value)
    assert text.startswith("VGG16 detector for projector.py:")
    assert (
        text.index("vgg16.pt:") < text.index("or both of") < text.index("vgg16-397923af.pth:") < text.index("vgg.pth:")
    )
    assert detectors.LPIPS_FILE.url in text and "already found" not in text
    folder = isolated_cache / "dets"
    folder.mkdir()
    (folder / "vgg.pth").write_bytes(b"x")
    with pytest.raises(detectors.DetectorNotFoundError, match=r"vgg\.pth: .*\[already found: .*dets/vgg\.pth\]"):
        detectors.locate_detector("vgg16", str(folder), need_lpips=True)
    with pytest.raises(detectors.DetectorNotFoundError) as info:
        detectors.locate_detector("vgg16")  # precision/recall: the VGG16 file alone is enough
    assert "precision/recall" in str(info.value) and "vgg.pth:" not in str(info.value)


def test_detector_search_order_flag_then_env_then_cache(isolated_cache, monkeypatch):
    flag, env, cache = (isolated_cache / name for name in ("flag", "env", "cache/detectors"))
    for folder in (flag, env, cache):
        folder.mkdir(parents=True)
        (folder / "inception-2015-12-05.pt").write_bytes(b"x")
    monkeypatch.setenv("RLO_DETECTOR_DIR", str(env))
    assert detectors.locate_detector("inception", str(flag)).path == str(flag / "inception-2015-12-05.pt")
    assert detectors.locate_detector("inception").path == str(env / "inception-2015-12-05.pt")
    monkeypatch.delenv("RLO_DETECTOR_DIR")
    assert detectors.locate_detector("inception").path == str(cache / "inception-2015-12-05.pt")
    with pytest.raises(detectors.DetectorNotFoundError, match="--detector-dir"):
        detectors.locate_detector("inception", str(isolated_cache / "nope"))


def test_official_dnnlib_cache_is_searched(isolated_cache):
    from dnnlib import util

    url = detectors.INCEPTION_FILES[0].url
    path = util.cache_path_for_url(url, str(isolated_cache / "dnnlib"))
    os.makedirs(os.path.dirname(path))
    open(path, "wb").close()
    assert detectors.locate_detector("inception").path == path


# ----------------------------------------------------------------------------------------------------
# Files whose names carry a sha256 prefix (pytorch-fid's, torchvision's) are checked against it.


def test_a_file_whose_content_is_not_the_named_one_is_refused_in_one_line(tmp_path, monkeypatch):
    monkeypatch.delenv(detectors.DIGESTS_ENV)
    (tmp_path / "pt_inception-2015-12-05-6726825d.pth").write_bytes(b"not the inception weights")
    with pytest.raises(detectors.DetectorDigestError) as info:
        detectors.locate_detector("inception", str(tmp_path))
    message = str(info.value)
    assert "\n" not in message and "not 6726825d as the name pt_inception-2015-12-05-6726825d.pth promises" in message
    assert detectors.INCEPTION_FILES[1].url in message


def test_a_file_with_the_named_digest_is_accepted(tmp_path, monkeypatch):
    monkeypatch.delenv(detectors.DIGESTS_ENV)
    content = b"stand-in weights"
    digest = hashlib.sha256(content).hexdigest()[:8]
    file = dataclasses.replace(detectors.VGG16_FILES[1], name=f"vgg16-{digest}.pth", sha256_prefix=digest)
    (tmp_path / file.name).write_bytes(content)
    detectors.check_digest(file, str(tmp_path / file.name))  # no error


def test_train_refuses_a_wrong_digest_before_a_run_directory(tmp_path, monkeypatch):
    monkeypatch.delenv(detectors.DIGESTS_ENV)
    (tmp_path / "det").mkdir()
    (tmp_path / "det" / "pt_inception-2015-12-05-6726825d.pth").write_bytes(b"junk")
    monkeypatch.setenv("DNNLIB_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    args = [f"--outdir={tmp_path / 'runs'}", "--metrics=fid5k_full", f"--detector-dir={tmp_path / 'det'}"]
    result = CliRunner().invoke(train_command.main, args)
    assert result.exit_code == 2 and "its sha256 begins" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "runs").exists()


def test_train_refuses_a_damaged_detector_file_in_one_line_before_a_run_directory(tmp_path, monkeypatch):
    """The detector is built at the start (and kept for the run): a state dict that is not Inception's is refused
    before any output, not after tick 0 and a snapshot."""
    (tmp_path / "det").mkdir()
    torch.save({"not": torch.zeros(3)}, tmp_path / "det" / "pt_inception-2015-12-05-6726825d.pth")
    monkeypatch.setenv("DNNLIB_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    detectors.clear_detector_cache()
    args = [f"--outdir={tmp_path / 'runs'}", "--metrics=fid5k_full", f"--detector-dir={tmp_path / 'det'}"]
    result = CliRunner().invoke(train_command.main, args)
    assert result.exit_code == 2 and "--metrics=fid5k_full: " in result.output, result.output
    assert "Traceback" not in result.output and not (tmp_path / "runs").exists()
