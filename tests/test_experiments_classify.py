"""Classification experiment, data and command line: loss names parse, each dataset reader reads a fake archive or
folder in the real layout exactly (and a missing one is named with its flag and variable), presets set the paper's
values and flags override them, and a tiny CLI run writes a consistent table, CSV and figure."""

import csv
import io
import pathlib
import pickle
import tarfile

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import rlo
from dnnlib import image_data
from dnnlib.image_data import DataFileError
from experiments import classify, classify_data, classify_presets
from experiments.classify_train import TrainSettings, train_classifier


def _cli(*args):
    return CliRunner().invoke(classify.main, [str(a) for a in args], catch_exceptions=False)


# ---------------------------------------------------------------- loss names


@pytest.mark.parametrize(
    "name, expected",
    [
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
    ],
)
def test_loss_names_parse_to_family_members(name, expected):
    assert classify.parse_loss(name) == expected


@pytest.mark.parametrize("name", ["ce", "focal", "focal-g2-a0.5", "rlo-k5", "rlo-k2.5", "rlo-k3-m5", "rlo-eq9-k3"])
def test_the_cli_reads_the_labels_describe_writes(name):
    cfg = classify.parse_loss(name)
    assert cfg.describe() == name and cfg == rlo.LossConfig.parse(name)


@pytest.mark.parametrize(
    "bad", ["rlo", "rlo-", "rlo-k", "RLO-5", "cross-entropy", "rlo-0", "rlo-k0", "focal-3", "ce-k3", "rlo-k3-k4"]
)
def test_bad_loss_name_is_rejected_with_the_name(bad):
    with pytest.raises(ValueError, match=f"--losses: .*{bad!r}"):
        classify.parse_loss(bad)


def test_loss_list_keeps_order_and_rejects_duplicates():
    assert [c.describe() for c in classify.parse_losses(classify.DEFAULT_LOSSES)] == [
        "ce",
        "focal",
        "rlo-k5",
        "rlo-k8",
        "rlo-k10",
    ]
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
    return classify_data.load_digits_split(max_images=120)


def _source(data, crop_flip=False):
    return classify_data.make_source(data, classify_data.AugmentSettings(crop_flip=crop_flip), 32, torch.device("cpu"))


def test_digits_split_is_80_20_disjoint_and_seeded(tiny_digits):
    assert tiny_digits.train_images.shape == (96, 1, 32, 32) and tiny_digits.test_images.shape == (24, 1, 32, 32)
    again = classify_data.load_digits_split(max_images=120)
    assert torch.equal(again.test_images, tiny_digits.test_images)
    train = {bytes(x.numpy()) for x in tiny_digits.train_images}
    assert not train & {bytes(x.numpy()) for x in tiny_digits.test_images}


def test_same_seed_gives_identical_initial_weights_for_every_loss(tiny_digits):
    settings = TrainSettings(epochs=0)
    nets = [
        train_classifier(_source(tiny_digits), cfg, settings, seed=3, progress=False)[1]
        for cfg in classify.parse_losses(classify.DEFAULT_LOSSES)
    ]
    for net in nets[1:]:
        for a, b in zip(nets[0].parameters(), net.parameters()):
            assert torch.equal(a, b)
    other = train_classifier(_source(tiny_digits), rlo.LossConfig("ce"), settings, seed=4, progress=False)[1]
    assert not torch.equal(next(other.parameters()), next(nets[0].parameters()))


def test_one_epoch_moves_the_losses_apart_from_the_shared_start(tiny_digits):
    settings = TrainSettings(epochs=1, batch=32)
    ce = train_classifier(_source(tiny_digits), rlo.LossConfig("ce"), settings, seed=0, progress=False)
    rooted = train_classifier(_source(tiny_digits), rlo.LossConfig("rlo", k=5), settings, seed=0, progress=False)
    assert ce[0].epochs[0].test_acc == rooted[0].epochs[0].test_acc  # same initial network
    assert ce[0].epochs[1].train_loss == ce[0].epochs[1].train_ce  # CE's own objective is CE
    assert rooted[0].epochs[1].train_loss != pytest.approx(rooted[0].epochs[1].train_ce)
    assert not torch.equal(next(ce[1].parameters()), next(rooted[1].parameters()))


def test_random_crop_flip_matches_a_per_image_reference():
    x = torch.randn(6, 3, 8, 8)
    out = classify_data.random_crop_flip(x, torch.Generator().manual_seed(7))
    draws = torch.Generator().manual_seed(7)  # same draws, in the same order as the implementation
    dy = torch.randint(0, 9, (6,), generator=draws)
    dx = torch.randint(0, 9, (6,), generator=draws)
    flip = torch.rand(6, generator=draws) < 0.5
    padded = torch.zeros(6, 3, 16, 16)
    padded[:, :, 4:12, 4:12] = x
    for i in range(6):
        window = padded[i, :, dy[i] : dy[i] + 8, dx[i] : dx[i] + 8]
        torch.testing.assert_close(out[i], window.flip(-1) if flip[i] else window, rtol=0, atol=0)


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
            content = {
                b"data": images.transpose(0, 3, 1, 2).reshape(per_batch, -1),
                b"labels": labels,
                b"batch_label": batch.encode(),
            }
            data = pickle.dumps(content, protocol=2)
            info = tarfile.TarInfo(f"cifar-10-batches-py/{batch}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
            batches[batch] = (images, labels)
    train = [batches[f"data_batch_{i}"] for i in range(1, 6)]
    return (
        path,
        np.concatenate([b[0] for b in train]),
        sum((b[1] for b in train), []),
        *batches.get("test_batch", (None, None)),
    )


def test_cifar10_loader_reads_the_python_archive_exactly(tmp_path):
    path, train_images, train_labels, test_images, test_labels = _fake_cifar_archive(tmp_path)
    for source in (path, _extracted(path, tmp_path)):
        data = classify_data.load_cifar10_split(source)
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
        classify_data.load_cifar10_split(path)


def test_missing_cifar10_archive_is_reported_by_name(tmp_path, monkeypatch):
    monkeypatch.delenv("RLO_CIFAR10", raising=False)
    with pytest.raises(FileNotFoundError, match=r"cifar-10-python\.tar\.gz.*--cifar-path.*RLO_CIFAR10"):
        classify_data.resolve_data_path("cifar10", None)
    missing = tmp_path / "nowhere" / "cifar-10-python.tar.gz"
    monkeypatch.setenv("RLO_CIFAR10", str(missing))
    with pytest.raises(FileNotFoundError, match=r"\$RLO_CIFAR10: no such file .*nowhere"):
        classify_data.resolve_data_path("cifar10", None)
    result = _cli("--data", "cifar10", "--cifar-path", missing, "--out", tmp_path)
    assert result.exit_code == 2
    err = result.stderr
    assert str(missing) in err and classify_data.DATASETS["cifar10"].url in err
    assert not list(tmp_path.glob("classify_*"))


# ---------------------------------------------------------------- CLI


def test_tiny_run_writes_table_csv_and_figure_that_agree(tmp_path):
    argv = [
        "--epochs",
        "2",
        "--seeds",
        "2",
        "--max-images",
        "200",
        "--losses",
        "ce,rlo-5",
        "--batch",
        "32",
        "--out",
        str(tmp_path),
        "--device",
        "cpu",
    ]
    result = _cli(*argv)
    assert result.exit_code == 0, result.output
    table = (tmp_path / "classify_digits.md").read_text()
    assert (
        f"Produced by `python -m experiments.classify --losses=ce,rlo-k5 --epochs=2 --batch=32 --seeds=2 "
        f"--max-images=200 --out={tmp_path} --device=cpu`."
    ) in table
    assert "| small-cnn | CE |" in table and "| small-cnn | RLO-5 |" in table and "40 test images" in table
    assert "| Dataset | Model | CE time (s) | CE acc. (%) | RLO-5 time (s) | RLO-5 acc. (%) |" in table
    summary = list(csv.DictReader(io.StringIO((tmp_path / "classify_digits.csv").read_text())))
    epochs = list(csv.DictReader(io.StringIO((tmp_path / "classify_digits_epochs.csv").read_text())))
    assert [row["loss"] for row in summary] == ["ce", "rlo-k5"]
    assert len(epochs) == 2 * 2 * 3  # losses x seeds x (initial + 2 epochs)
    for row in summary:
        final = [100 * float(e["test_acc"]) for e in epochs if e["loss"] == row["loss"] and e["epoch"] == "2"]
        assert float(row["test_acc_mean"]) == pytest.approx(np.mean(final), abs=1e-5)
        t975 = 12.706204736  # Student t, 0.975 quantile, 1 degree of freedom (tables)
        assert float(row["test_acc_ci95"]) == pytest.approx(t975 * np.std(final, ddof=1) / np.sqrt(2), abs=1e-5)
        ce = [100 * float(e["test_acc"]) for e in epochs if e["loss"] == "ce" and e["epoch"] == "2"]
        assert float(row["diff_vs_ce_mean"]) == pytest.approx(np.mean(np.subtract(final, ce)), abs=1e-5)
    for e in epochs:  # accuracies are counts out of the 40 test images
        assert float(e["test_acc"]) * 40 == pytest.approx(round(float(e["test_acc"]) * 40), abs=1e-3)
    assert (tmp_path / "classify_digits.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cifar10_run_trains_with_augmentation_and_writes_its_outputs(tmp_path, monkeypatch):
    path = _fake_cifar_archive(tmp_path, per_batch=4)[0]
    monkeypatch.setenv("RLO_CIFAR10", str(path))
    result = _cli(
        "--data", "cifar10", "--epochs", 1, "--seeds", 1, "--losses", "rlo-8", "--out", tmp_path, "--device", "cpu"
    )
    assert result.exit_code == 0, result.output
    table = (tmp_path / "classify_cifar10.md").read_text()
    assert "20 train / 4 test images [3, 32, 32]" in table and "augmentation crop+flip" in table

    assert "| RLO-8 |" in table and (tmp_path / "classify_cifar10.png").exists()


def test_a_member_without_a_multiclass_form_is_refused(monkeypatch):
    monkeypatch.setattr(rlo, "loss_names", lambda task=None: ("ce",) if task == "multiclass" else ("ce", "focal"))
    with pytest.raises(ValueError, match="--losses: 'focal' has no multi-class form; choose from ce"):
        classify.parse_loss("focal")


# ---------------------------------------------------------------- CIFAR-100


def _fake_cifar100_archive(tmp_path, n_train=6, n_test=3):
    """cifar-100-python.tar.gz in the official layout: cifar-100-python/{train,test,meta}, pickles with b'data',
    b'fine_labels' and b'coarse_labels'."""
    rng = np.random.RandomState(2)
    path = tmp_path / "cifar-100-python.tar.gz"
    splits = {}
    with tarfile.open(path, "w:gz") as tar:
        for split, n in (("train", n_train), ("test", n_test), ("meta", 0)):
            if split == "meta":
                content = {b"fine_label_names": [b"apple"] * 100, b"coarse_label_names": [b"fruit"] * 20}
            else:
                images = rng.randint(0, 256, size=(n, 32, 32, 3), dtype=np.uint8)
                fine = [int(v) for v in rng.randint(0, 100, size=n)]
                content = {
                    b"data": images.transpose(0, 3, 1, 2).reshape(n, -1),
                    b"fine_labels": fine,
                    b"coarse_labels": [f // 5 for f in fine],
                    b"filenames": [b"x.png"] * n,
                }
                splits[split] = (images, fine)
            data = pickle.dumps(content, protocol=2)
            info = tarfile.TarInfo(f"cifar-100-python/{split}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path, splits


def test_cifar100_reader_reads_fine_labels_from_the_archive_and_its_folder(tmp_path):
    path, splits = _fake_cifar100_archive(tmp_path)
    with tarfile.open(path) as tar:
        tar.extractall(tmp_path / "x", filter="data")
    for source in (path, tmp_path / "x" / "cifar-100-python"):
        data = classify_data.load_cifar100_split(source)
        assert data.num_classes == 100 and data.train_images.shape == (6, 3, 32, 32)
        for split, images, labels in (
            ("train", data.train_images, data.train_labels),
            ("test", data.test_images, data.test_labels),
        ):
            np.testing.assert_array_equal(images.numpy(), splits[split][0].transpose(0, 3, 1, 2))
            assert labels.tolist() == splits[split][1]


def test_cifar10_archive_given_as_cifar100_is_named(tmp_path):
    path = _fake_cifar_archive(tmp_path)[0]
    with pytest.raises(
        DataFileError,
        match=r"cifar-10-python\.tar\.gz: not the CIFAR-100 python archive .*"
        r"no cifar-100-python/train",
    ):
        image_data.read_cifar100(str(path), "train")


# ---------------------------------------------------------------- image folders


def _jpeg(path, rng, size=(20, 16)):
    import PIL.Image

    path.parent.mkdir(parents=True, exist_ok=True)
    PIL.Image.fromarray(rng.randint(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)).save(path, quality=95)


def _fake_tiny_imagenet(tmp_path, wnids=("n01443537", "n01629819", "n01641577"), per_class=2):
    rng = np.random.RandomState(3)
    root = tmp_path / "tiny-imagenet-200"
    root.mkdir()
    (root / "wnids.txt").write_text("\n".join(wnids) + "\n")
    for wnid in wnids:
        for i in range(per_class):
            _jpeg(root / "train" / wnid / "images" / f"{wnid}_{i}.JPEG", rng, (64, 64))
        (root / "train" / wnid / f"{wnid}_boxes.txt").write_text("")
    lines = []
    for i, wnid in enumerate([wnids[2], wnids[0], wnids[1], wnids[2]]):
        _jpeg(root / "val" / "images" / f"val_{i}.JPEG", rng, (64, 64))
        lines.append(f"val_{i}.JPEG\t{wnid}\t0\t0\t63\t63")
    (root / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")
    (root / "test" / "images").mkdir(parents=True)  # unlabelled, never read
    return root


def _fake_food101(tmp_path, classes=("apple_pie", "baby_back_ribs")):
    rng = np.random.RandomState(4)
    root = tmp_path / "food-101"
    (root / "meta").mkdir(parents=True)
    (root / "meta" / "classes.txt").write_text("\n".join(classes) + "\n")
    train, test = (
        [f"{classes[0]}/101", f"{classes[1]}/202", f"{classes[1]}/203"],
        [f"{classes[0]}/7", f"{classes[1]}/9"],
    )
    for item in train + test:
        _jpeg(root / "images" / f"{item}.jpg", rng, (40, 30))
    (root / "meta" / "train.txt").write_text("\n".join(train) + "\n")
    (root / "meta" / "test.txt").write_text("\n".join(test) + "\n")
    return root


def test_tiny_imagenet_reader_lists_train_and_labelled_val_in_wnid_order(tmp_path):
    root = _fake_tiny_imagenet(tmp_path)
    train = image_data.list_tiny_imagenet(str(root), "train")
    val = image_data.list_tiny_imagenet(str(root), "val")
    assert train.classes == ("n01443537", "n01629819", "n01641577")
    assert train.labels.tolist() == [0, 0, 1, 1, 2, 2]
    assert [pathlib.Path(f).name for f in train.files][2] == "n01629819_0.JPEG"
    assert val.labels.tolist() == [2, 0, 1, 2] and pathlib.Path(val.files[1]).name == "val_1.JPEG"


def test_food101_reader_follows_meta_lists(tmp_path):
    root = _fake_food101(tmp_path)
    train = image_data.list_food101(str(root), "train")
    test = image_data.list_food101(str(root), "test")
    assert train.classes == ("apple_pie", "baby_back_ribs") and train.labels.tolist() == [0, 1, 1]
    assert test.files[1] == str(root / "images" / "baby_back_ribs" / "9.jpg") and test.labels.tolist() == [0, 1]


def test_folder_batches_decode_resize_and_normalise_with_imagenet_statistics(tmp_path):
    root = _fake_food101(tmp_path)
    data = classify_data.load_data("food101", str(root))
    source = classify_data.make_source(data, classify_data.AugmentSettings(crop_flip=False), 24, torch.device("cpu"))
    ((x, y),) = list(source.test_batches(10))
    assert x.shape == (2, 3, 24, 24) and y.tolist() == [0, 1]
    import PIL.Image
    import torchvision.transforms.v2.functional as TF

    expected = TF.resize(TF.pil_to_tensor(PIL.Image.open(data.test.files[0]).convert("RGB")), [24, 24], antialias=True)
    mean = torch.tensor(classify_data.IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(classify_data.IMAGENET_STD).view(3, 1, 1)
    torch.testing.assert_close(x[0], (expected.float() / 255 - mean) / std)


def test_folder_training_batches_do_not_depend_on_workers_or_sharding(tmp_path):
    root = _fake_tiny_imagenet(tmp_path)
    data = classify_data.load_data("tinyimagenet", str(root))
    augment = classify_data.AugmentSettings(crop_flip=True, randaugment=(2, 9))
    source = classify_data.make_source(data, augment, 32, torch.device("cpu"))
    one = list(source.train_batches(epoch=1, seed=5, batch=4))
    workers = list(source.train_batches(epoch=1, seed=5, batch=4, workers=2))
    halves = [list(source.train_batches(epoch=1, seed=5, batch=4, rank=r, world=2)) for r in (0, 1)]
    assert [n for _, _, n in one] == [4, 2]
    for (x, y, _n), (xw, yw, _), (x0, _y0, _), (x1, y1, _) in zip(one, workers, *halves):
        assert torch.equal(x, xw) and torch.equal(y, yw)
        assert torch.equal(x[0::2], x0) and torch.equal(x[1::2], x1) and torch.equal(y[1::2], y1)
    other_epoch = list(source.train_batches(epoch=2, seed=5, batch=4))
    assert not torch.equal(one[0][0], other_epoch[0][0])


@pytest.mark.parametrize(
    "name, flag, env, expected",
    [
        ("cifar100", "--cifar100-path", "RLO_CIFAR100", "cifar-100-python.tar.gz"),
        ("tinyimagenet", "--tinyimagenet-path", "RLO_TINYIMAGENET", "tiny-imagenet-200"),
        ("food101", "--food101-path", "RLO_FOOD101", "food-101"),
    ],
)
def test_a_missing_dataset_names_the_flag_the_variable_and_what_to_put_there(
    name, flag, env, expected, tmp_path, monkeypatch
):
    monkeypatch.delenv(env, raising=False)
    result = _cli("--data", name, "--out", tmp_path / "out", "--device", "cpu")
    assert result.exit_code == 2
    error = result.stderr.strip().splitlines()[-1]
    assert error.startswith(f"Error: --data={name} needs {expected}.") and flag in error and env in error
    missing = tmp_path / "nowhere" / expected
    result = _cli("--data", name, flag, missing, "--out", tmp_path / "out", "--device", "cpu")
    error = result.stderr.strip().splitlines()[-1]
    assert result.exit_code == 2 and f"{flag}: no such" in error and str(missing) in error
    assert not (tmp_path / "out").exists()


def test_a_folder_without_its_lists_is_named(tmp_path):
    root = _fake_food101(tmp_path)
    (root / "meta" / "test.txt").unlink()
    result = _cli("--data", "food101", "--food101-path", root, "--out", tmp_path / "out", "--device", "cpu")
    assert result.exit_code == 2 and f"missing Food-101 test list: {root / 'meta' / 'test.txt'}" in result.stderr


def test_food101_run_trains_from_the_folder(tmp_path):
    root = _fake_food101(tmp_path)
    result = _cli(
        "--data",
        "food101",
        "--food101-path",
        root,
        "--image-size",
        16,
        "--epochs",
        1,
        "--seeds",
        1,
        "--losses",
        "ce,rlo-k8",
        "--batch",
        2,
        "--out",
        tmp_path,
        "--device",
        "cpu",
    )
    assert result.exit_code == 0, result.output
    table = (tmp_path / "classify_food101.md").read_text()
    assert "3 train / 2 test images [3, 16, 16]" in table and "augmentation crop+flip" in table


# ---------------------------------------------------------------- presets


def _preset_params(*args):
    """The parameters main() would run with, without running anything."""
    captured = {}

    def stop(params, preset):
        captured.update(params)
        raise SystemExit(0)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(classify, "_validate", stop)
        CliRunner().invoke(classify.main, [str(a) for a in args], catch_exceptions=False)
    return captured


def test_a_preset_sets_the_papers_values_and_explicit_flags_win():
    params = _preset_params("--preset", "table2-cifar100-vit")
    assert params["data"] == "cifar100" and params["model"] == ("vit-b",) and params["epochs"] == 200
    assert params["optimizer"] == "adam" and params["lr"] == 1e-4 and params["batch"] == 512
    assert [c.describe() for c in params["losses"]] == ["ce", "focal", "rlo-k5", "rlo-k8", "rlo-k10", "rlo-eq9-k3"]
    assert params["losses"][1] == rlo.LossConfig("focal", gamma=3, alpha=0.25)
    assert params["losses"][-1] == rlo.LossConfig("rlo-eq9", k=3)  # m = k = 3: the authors' root_loss, m (1 - p^(1/k))
    params = _preset_params("--preset", "table2-cifar100-vit", "--epochs", "3", "--lr", "0.01", "--losses", "ce")
    assert params["epochs"] == 3 and params["lr"] == 0.01 and params["losses"] == [rlo.LossConfig("ce")]
    assert params["batch"] == 512  # untouched values stay the preset's
    params = _preset_params("--preset", "table3-resnet")
    assert params["model"] == ("resnet34", "resnet50", "resnet101") and params["channels_last"] is True
    assert [c.describe() for c in params["losses"]] == ["ce", "focal", "rlo-k10", "rlo-eq9-k3"]


@pytest.mark.parametrize("name", classify_presets.PRESET_NAMES)
def test_every_preset_parses_to_valid_flags(name):
    params = _preset_params("--preset", name)
    preset = classify_presets.PRESETS[name]
    assert set(preset.as_dict()) <= set(params) and params["seeds"] == 3
    assert params["epochs"] == (10 if preset.needs_pretrained else 200 if "vit" in name else 100)


def test_a_fine_tuning_preset_needs_a_pretrained_file(tmp_path):
    result = _cli("--preset", "table2-food101-resnet", "--out", tmp_path / "out", "--device", "cpu")
    assert result.exit_code == 2
    assert "--preset=table2-food101-resnet fine-tunes: pass --pretrained=PATH" in result.stderr
    assert "resnet50" in result.stderr and not (tmp_path / "out").exists()


def test_fp16_is_refused_on_the_cpu(tmp_path):
    result = _cli("--precision", "fp16", "--device", "cpu", "--out", tmp_path / "out")
    assert result.exit_code == 2 and "--precision=fp16 needs --device=cuda" in result.stderr
