"""Classification experiment: loss names parse, every loss starts from the same net, CIFAR-10 is read exactly from
its python archive (and a missing one is named), and a tiny CLI run writes a consistent table, CSV and figure."""
import csv
import io
import pickle
import tarfile

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import rlo
from rlo.experiments import classify, classifier_models
from rlo.experiments.image_data import DataFileError


def _cli(*args):
    return CliRunner().invoke(classify.main, [str(a) for a in args], catch_exceptions=False)


# ---------------------------------------------------------------- loss names

@pytest.mark.parametrize("name, expected", [
    ("ce", rlo.LossConfig("ce")),
    ("focal", rlo.LossConfig("focal", gamma=3.0, alpha=0.25)),
    ("focal-g2-a0.5", rlo.LossConfig("focal", gamma=2.0, alpha=0.5)),
    ("rlo-k5", rlo.LossConfig("rlo", k=5)),
    ("rlo-k3-m5", rlo.LossConfig("rlo", k=3, m=5)),
    ("rlo-eq9-k3", rlo.LossConfig("rlo-eq9", k=3)),
    ("unhinged", rlo.LossConfig("unhinged")),
    # the short spellings this CLI always took, aliases of the labels above
    ("rlo-5", rlo.LossConfig("rlo", k=5)),
    ("rlo-10", rlo.LossConfig("rlo", k=10.0)),
    ("rlo-2.5", rlo.LossConfig("rlo", k=2.5)),
    ("rlo-eq9-3", rlo.LossConfig("rlo-eq9", k=3)),
])
def test_loss_names_parse_to_family_members(name, expected):
    assert classify.parse_loss(name) == expected


@pytest.mark.parametrize("name", ["ce", "focal", "focal-g2-a0.5", "rlo-k5", "rlo-k2.5", "rlo-k3-m5", "rlo-eq9-k3"])
def test_the_cli_reads_the_labels_describe_writes(name):
    cfg = classify.parse_loss(name)
    assert cfg.describe() == name and cfg == rlo.LossConfig.parse(name)


@pytest.mark.parametrize("bad", ["rlo", "rlo-", "rlo-k", "RLO-5", "cross-entropy", "rlo-0", "rlo-k0", "focal-3",
                                 "ce-k3", "rlo-k3-k4"])
def test_bad_loss_name_is_rejected_with_the_name(bad):
    with pytest.raises(ValueError, match=f"--losses: .*{bad!r}"):
        classify.parse_loss(bad)


def test_loss_list_keeps_order_and_rejects_duplicates():
    assert [c.describe() for c in classify.parse_losses(classify.DEFAULT_LOSSES)] == [
        "ce", "focal", "rlo-k5", "rlo-k8", "rlo-k10"]
    with pytest.raises(ValueError, match="twice"):
        classify.parse_losses("ce,rlo-5,ce")
    with pytest.raises(ValueError, match="twice"):
        classify.parse_losses("rlo-5,rlo-k5")  # an alias and its label are one loss
    result = _cli("--losses", "ce,bogus", "--epochs", 0)
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines()[-1].startswith("Error: --losses: ") and "'bogus'" in result.stderr


# ---------------------------------------------------------------- data and init

@pytest.fixture(scope="module")
def tiny_digits():
    return classify.load_digits_split(max_images=120)


def test_digits_split_is_80_20_disjoint_and_seeded(tiny_digits):
    assert tiny_digits.train_images.shape == (96, 1, 32, 32) and tiny_digits.test_images.shape == (24, 1, 32, 32)
    again = classify.load_digits_split(max_images=120)
    assert torch.equal(again.test_images, tiny_digits.test_images)
    train = {bytes(x.numpy()) for x in tiny_digits.train_images}
    assert not train & {bytes(x.numpy()) for x in tiny_digits.test_images}


def test_same_seed_gives_identical_initial_weights_for_every_loss(tiny_digits):
    settings = classify.TrainSettings(epochs=0)
    nets = [classify.train_classifier(tiny_digits, cfg, settings, seed=3, progress=False)[1]
            for cfg in classify.parse_losses(classify.DEFAULT_LOSSES)]
    for net in nets[1:]:
        for a, b in zip(nets[0].parameters(), net.parameters()):
            assert torch.equal(a, b)
    other = classify.train_classifier(tiny_digits, rlo.LossConfig("ce"), settings, seed=4, progress=False)[1]
    assert not torch.equal(next(other.parameters()), next(nets[0].parameters()))


def test_one_epoch_moves_the_losses_apart_from_the_shared_start(tiny_digits):
    settings = classify.TrainSettings(epochs=1, batch=32)
    ce = classify.train_classifier(tiny_digits, rlo.LossConfig("ce"), settings, seed=0, progress=False)
    rooted = classify.train_classifier(tiny_digits, rlo.LossConfig("rlo", k=5), settings, seed=0, progress=False)
    assert ce[0].epochs[0].test_acc == rooted[0].epochs[0].test_acc          # same initial network
    assert ce[0].epochs[1].train_loss == ce[0].epochs[1].train_ce          # CE's own objective is CE
    assert rooted[0].epochs[1].train_loss != pytest.approx(rooted[0].epochs[1].train_ce)
    assert not torch.equal(next(ce[1].parameters()), next(rooted[1].parameters()))


def test_random_crop_flip_matches_a_per_image_reference():
    x = torch.randn(6, 3, 8, 8)
    out = classify.random_crop_flip(x, torch.Generator().manual_seed(7))
    draws = torch.Generator().manual_seed(7)   # same draws, in the same order as the implementation
    dy = torch.randint(0, 9, (6,), generator=draws)
    dx = torch.randint(0, 9, (6,), generator=draws)
    flip = torch.rand(6, generator=draws) < 0.5
    padded = torch.zeros(6, 3, 16, 16)
    padded[:, :, 4:12, 4:12] = x
    for i in range(6):
        window = padded[i, :, dy[i]:dy[i] + 8, dx[i]:dx[i] + 8]
        torch.testing.assert_close(out[i], window.flip(-1) if flip[i] else window, rtol=0, atol=0)


def test_models_map_32px_images_to_class_logits():
    x = torch.randn(2, 3, 32, 32)
    assert classifier_models.make_classifier("small-cnn", 3, 10)(x).shape == (2, 10)
    resnet = classifier_models.make_classifier("resnet18", 3, 10)
    assert resnet.conv1.stride == (1, 1) and isinstance(resnet.maxpool, torch.nn.Identity)
    assert resnet(x).shape == (2, 10)
    with pytest.raises(ValueError, match="'vgg'"):
        classifier_models.make_classifier("vgg", 3, 10)


# ---------------------------------------------------------------- CIFAR-10

def _fake_cifar_archive(tmp_path, per_batch=2, with_test_batch=True):
    """cifar-10-python.tar.gz in the official layout (protocol-2 pickles of {'data': uint8 [N, 3072] planar RGB,
    'labels': list}, as in tests/test_dataset_tool.py); returns (path, train NHWC, train labels, test, labels)."""
    rng = np.random.RandomState(1)
    batches = {}
    path = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        for batch in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"] * with_test_batch:
            images = rng.randint(0, 256, size=(per_batch, 32, 32, 3), dtype=np.uint8)
            labels = [int(v) for v in rng.randint(0, 10, size=per_batch)]
            content = {b"data": images.transpose(0, 3, 1, 2).reshape(per_batch, -1), b"labels": labels,
                       b"batch_label": batch.encode()}
            data = pickle.dumps(content, protocol=2)
            info = tarfile.TarInfo(f"cifar-10-batches-py/{batch}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
            batches[batch] = (images, labels)
    train = [batches[f"data_batch_{i}"] for i in range(1, 6)]
    return (path, np.concatenate([b[0] for b in train]), sum((b[1] for b in train), []),
            *batches.get("test_batch", (None, None)))


def test_cifar10_loader_reads_the_python_archive_exactly(tmp_path):
    path, train_images, train_labels, test_images, test_labels = _fake_cifar_archive(tmp_path)
    for source in (path, _extracted(path, tmp_path)):
        data = classify.load_cifar10_split(source)
        assert data.train_images.shape == (10, 3, 32, 32) and data.test_images.shape == (2, 3, 32, 32)
        np.testing.assert_array_equal(data.train_images.numpy(), train_images.transpose(0, 3, 1, 2))
        np.testing.assert_array_equal(data.test_images.numpy(), test_images.transpose(0, 3, 1, 2))
        assert data.train_labels.tolist() == train_labels and data.test_labels.tolist() == test_labels


def _extracted(path, tmp_path):
    with tarfile.open(path) as tar:
        tar.extractall(tmp_path / "x", filter="data")
    return tmp_path / "x" / "cifar-10-batches-py"


def test_archive_without_test_batch_is_reported(tmp_path):
    path = _fake_cifar_archive(tmp_path, with_test_batch=False)[0]
    result = _cli("--data", "cifar10", "--cifar-path", path, "--out", tmp_path)
    assert result.exit_code == 2 and "no test_batch inside" in result.stderr
    with pytest.raises(DataFileError, match=r"cifar-10-python\.tar\.gz.*no test_batch inside"):
        classify.load_cifar10_split(path)


def test_missing_cifar10_archive_is_reported_by_name(tmp_path, monkeypatch):
    monkeypatch.delenv(classify.CIFAR10_ENV, raising=False)
    with pytest.raises(FileNotFoundError, match=r"cifar-10-python\.tar\.gz.*--cifar-path.*RLO_CIFAR10"):
        classify.resolve_cifar10_path(None)
    missing = tmp_path / "nowhere" / "cifar-10-python.tar.gz"
    monkeypatch.setenv(classify.CIFAR10_ENV, str(missing))
    with pytest.raises(FileNotFoundError, match=r"\$RLO_CIFAR10: no such file .*nowhere"):
        classify.resolve_cifar10_path(None)
    result = _cli("--data", "cifar10", "--cifar-path", missing, "--out", tmp_path)
    assert result.exit_code == 2
    err = result.stderr
    assert str(missing) in err and classify.CIFAR10_URL in err
    assert not list(tmp_path.glob("classify_*"))


# ---------------------------------------------------------------- CLI

def test_tiny_run_writes_table_csv_and_figure_that_agree(tmp_path):
    argv = ["--epochs", "2", "--seeds", "2", "--max-images", "200", "--losses", "ce,rlo-5", "--batch", "32",
            "--out", str(tmp_path), "--device", "cpu"]
    result = _cli(*argv)
    assert result.exit_code == 0, result.output
    table = (tmp_path / "classify_digits.md").read_text()
    assert (f"Produced by `python -m rlo.experiments.classify --losses=ce,rlo-k5 --epochs=2 --batch=32 --seeds=2 "
            f"--max-images=200 --out={tmp_path} --device=cpu`.") in table
    assert "| CE |" in table and "| RLO-5 |" in table and "40 test images" in table
    summary = list(csv.DictReader(io.StringIO((tmp_path / "classify_digits.csv").read_text())))
    epochs = list(csv.DictReader(io.StringIO((tmp_path / "classify_digits_epochs.csv").read_text())))
    assert [row["loss"] for row in summary] == ["ce", "rlo-k5"]
    assert len(epochs) == 2 * 2 * 3  # losses x seeds x (initial + 2 epochs)
    for row in summary:
        final = [100 * float(e["test_acc"]) for e in epochs if e["loss"] == row["loss"] and e["epoch"] == "2"]
        assert float(row["test_acc_mean"]) == pytest.approx(np.mean(final), abs=1e-5)
        assert float(row["test_acc_std"]) == pytest.approx(np.std(final), abs=1e-5)
        ce = [100 * float(e["test_acc"]) for e in epochs if e["loss"] == "ce" and e["epoch"] == "2"]
        assert float(row["diff_vs_ce_mean"]) == pytest.approx(np.mean(np.subtract(final, ce)), abs=1e-5)
    for e in epochs:  # accuracies are counts out of the 40 test images
        assert float(e["test_acc"]) * 40 == pytest.approx(round(float(e["test_acc"]) * 40), abs=1e-3)
    assert (tmp_path / "classify_digits.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cifar10_run_trains_with_augmentation_and_writes_its_outputs(tmp_path, monkeypatch):
    path = _fake_cifar_archive(tmp_path, per_batch=4)[0]
    monkeypatch.setenv(classify.CIFAR10_ENV, str(path))
    result = _cli("--data", "cifar10", "--epochs", 1, "--seeds", 1, "--losses", "rlo-8", "--out", tmp_path,
                  "--device", "cpu")
    assert result.exit_code == 0, result.output
    table = (tmp_path / "classify_cifar10.md").read_text()
    assert "20 train / 4 test images [3, 32, 32]" in table and "augmentation crop+flip" in table
    assert "| RLO-8 |" in table and (tmp_path / "classify_cifar10.png").exists()
