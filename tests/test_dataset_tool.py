"""dataset_tool.py: sources (folders, zips, CIFAR-10 archive, sklearn digits), conversions and atomic output."""

import io
import json
import os
import pickle
import shutil
import tarfile
import zipfile

import click
import numpy as np
import PIL.Image
import pytest
from click.testing import CliRunner
from conftest import shared_path
from damaged_files import corrupt_stored_member, png_claiming_size

from commands import dataset_tool_command as dataset_tool
from dnnlib.image_data import load_numpy_pickle
from training import dataset_sources
from training.dataset import DatasetError, DigitsDataset, ImageFolderDataset


def _convert(source, dest, **kwargs):
    messages = []
    n = dataset_tool.convert_dataset(str(source), str(dest), echo=messages.append, progress=False, **kwargs)
    return n, "\n".join(messages)


def _save(path, array, mode=None, **save_kwargs):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    PIL.Image.fromarray(array, mode).save(path, **save_kwargs)


def _composite_over_white(rgba):
    alpha = rgba[..., 3:].astype(np.float64) / 255
    return rgba[..., :3] * alpha + 255 * (1 - alpha)


# ---------------------------------------------------------------- CIFAR-10 python archive


def _fake_cifar(tmp_path, per_batch=3, key_type=str, extra=None):
    """cifar-10-python.tar.gz in the official layout with random images; returns (path, images NHWC, labels)."""
    rng = np.random.RandomState(0)
    all_images, all_labels = [], []
    tar_path = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(tar_path, "w:gz") as tar:
        for batch in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
            images = rng.randint(0, 256, size=(per_batch, 32, 32, 3), dtype=np.uint8)
            labels = [int(v) for v in rng.randint(0, 10, size=per_batch)]
            content = {
                key_type("data"): images.transpose(0, 3, 1, 2).reshape(per_batch, -1),
                key_type("labels"): labels,
                key_type("batch_label"): key_type(batch),
            }
            data = extra if (extra is not None and batch == "data_batch_2") else pickle.dumps(content, protocol=2)
            info = tarfile.TarInfo(f"cifar-10-batches-py/{batch}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
            if batch != "test_batch":
                all_images.append(images)
                all_labels += labels
    return tar_path, np.concatenate(all_images), all_labels


@pytest.mark.parametrize("key_type", [str, lambda s: s.encode()])
def test_cifar10_archive_converts_training_batches_exactly(tmp_path, key_type):
    tar_path, images, labels = _fake_cifar(tmp_path, key_type=key_type)
    n, _ = _convert(tar_path, tmp_path / "cifar.zip")
    assert n == 15  # 5 training batches; test_batch is left out as in the official tool
    ds = ImageFolderDataset(str(tmp_path / "cifar.zip"), use_labels=True)
    assert len(ds) == 15 and ds.image_shape == [3, 32, 32]
    for i in range(15):
        img, label = ds[i]
        assert np.array_equal(img, images[i].transpose(2, 0, 1))
        assert ds.get_details(i)["raw_label"] == labels[i]


class _Boom:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_cifar10_pickle_cannot_run_code(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    evil = pickle.dumps({"data": _Boom(), "labels": [0]}, protocol=2)
    tar_path, _, _ = _fake_cifar(tmp_path, extra=evil)
    with pytest.raises(DatasetError, match=r"data_batch_2.*refusing to load (posix|nt)\.system"):
        _convert(tar_path, tmp_path / "out.zip")
    assert not (tmp_path / "pwned").exists() and not (tmp_path / "out.zip").exists()


def test_numpy_only_unpickler_round_trips_arrays():
    arrays = {"a": np.arange(12, dtype=np.uint8).reshape(3, 4), "b": np.linspace(0, 1, 5), "c": [1, "x", b"y"]}
    for protocol in (2, 4, 5):
        out = load_numpy_pickle(pickle.dumps(arrays, protocol=protocol), "test")
        assert np.array_equal(out["a"], arrays["a"]) and out["a"].dtype == np.uint8
        assert np.array_equal(out["b"], arrays["b"]) and out["c"] == arrays["c"]


def test_not_a_cifar_archive_is_reported(tmp_path):
    tar_path = tmp_path / "other.tar.gz"
    with tarfile.open(tar_path, "w:gz") as tar:
        info = tarfile.TarInfo("readme.txt")
        tar.addfile(info, io.BytesIO(b""))
    with pytest.raises(DatasetError, match="data_batch_1"):
        _convert(tar_path, tmp_path / "out.zip")


# ---------------------------------------------------------------- sklearn digits


def test_sklearn_digits_materialise_the_embedded_dataset(tmp_path):
    n, _ = _convert("sklearn:digits", tmp_path / "digits.zip", max_images=50)
    assert n == 50
    written = ImageFolderDataset(str(tmp_path / "digits.zip"), use_labels=True)
    embedded = DigitsDataset(use_labels=True)
    for i in range(50):
        assert np.array_equal(written[i][0], embedded[i][0]) and np.array_equal(written[i][1], embedded[i][1])


# ---------------------------------------------------------------- odd images are converted, not rejected


def test_rgba_palette_and_grey_alpha_are_composited_over_white(tmp_path):
    rng = np.random.RandomState(1)
    rgba = rng.randint(0, 256, size=(16, 16, 4), dtype=np.uint8)
    la = rng.randint(0, 256, size=(16, 16, 2), dtype=np.uint8)
    rgb = rng.randint(0, 256, size=(16, 16, 3), dtype=np.uint8)
    _save(str(tmp_path / "src/a_rgba.png"), rgba, "RGBA")
    _save(str(tmp_path / "src/b_la.png"), la, "LA")
    pal = PIL.Image.fromarray(rgb).quantize(8)
    pal.info["transparency"] = 0
    pal.save(tmp_path / "src/c_pal.png", transparency=0)
    _save(str(tmp_path / "src/d_rgb.png"), rgb)
    n, messages = _convert(tmp_path / "src", tmp_path / "out.zip")
    assert n == 4 and "RGBA -> RGB" in messages and "white" in messages
    ds = ImageFolderDataset(str(tmp_path / "out.zip"))
    assert ds.image_shape == [3, 16, 16]
    assert np.abs(ds[0][0].transpose(1, 2, 0) - _composite_over_white(rgba)).max() <= 1
    la_rgba = np.concatenate([np.repeat(la[..., :1], 3, axis=2), la[..., 1:]], axis=2)
    assert np.abs(ds[1][0].transpose(1, 2, 0) - _composite_over_white(la_rgba)).max() <= 1
    pal_rgb = np.asarray(pal.convert("RGB"))
    index = np.asarray(pal)
    expected = np.where((index == 0)[..., None], 255, pal_rgb)
    assert np.array_equal(ds[2][0].transpose(1, 2, 0), expected)
    assert np.array_equal(ds[3][0].transpose(1, 2, 0), rgb)


def test_greyscale_only_sources_give_one_channel_and_16_bit_is_scaled(tmp_path):
    grey = np.random.RandomState(2).randint(0, 256, size=(8, 8), dtype=np.uint8)
    _save(str(tmp_path / "src/a.png"), grey, "L")
    deep = np.arange(64, dtype=np.uint16).reshape(8, 8) * 1000
    PIL.Image.fromarray(deep).save(tmp_path / "src/b16.png")
    _n, messages = _convert(tmp_path / "src", tmp_path / "out")
    ds = ImageFolderDataset(str(tmp_path / "out"))
    assert ds.image_shape == [1, 8, 8] and np.array_equal(ds[0][0][0], grey)
    assert np.array_equal(ds[1][0][0], np.rint(deep / 257).astype(np.uint8)) and "16-bit" in messages


def test_non_square_and_mixed_sizes_are_cropped_and_resized(tmp_path):
    wide = np.random.RandomState(3).randint(0, 256, size=(16, 24, 3), dtype=np.uint8)
    _save(str(tmp_path / "src/a_wide.png"), wide)
    _save(str(tmp_path / "src/b_big.png"), np.full((40, 40, 3), 77, np.uint8))
    n, messages = _convert(tmp_path / "src", tmp_path / "out.zip")
    assert n == 2 and "Center-cropping 1" in messages and "16x16" in messages
    ds = ImageFolderDataset(str(tmp_path / "out.zip"))
    assert ds.image_shape == [3, 16, 16]
    assert np.array_equal(ds[0][0].transpose(1, 2, 0), wide[:, 4:20])  # centred 16x16 crop, no resampling
    assert np.all(ds[1][0] == 77)  # a constant image stays constant through the lanczos resize


def test_resolution_and_box_filter_downscale_by_block_means(tmp_path):
    img = np.random.RandomState(4).randint(0, 256, size=(32, 32, 3), dtype=np.uint8)
    _save(str(tmp_path / "src/a.png"), img)
    _convert(tmp_path / "src", tmp_path / "out.zip", resolution="8x8", resize_filter="box")
    out = ImageFolderDataset(str(tmp_path / "out.zip"))[0][0].transpose(1, 2, 0).astype(np.float64)
    expected = img.astype(np.float64).reshape(8, 4, 8, 4, 3).mean(axis=(1, 3))
    assert np.abs(out - expected).max() <= 1


def test_center_crop_wide_letterboxes(tmp_path):
    _save(str(tmp_path / "src/a.png"), np.full((24, 32, 3), 200, np.uint8))
    _save(str(tmp_path / "src/b_small.png"), np.full((8, 8, 3), 200, np.uint8))
    n, messages = _convert(tmp_path / "src", tmp_path / "out.zip", resolution="16x8", transform="center-crop-wide")
    assert n == 1 and "Skipped 1" in messages and "b_small.png" in messages
    img = ImageFolderDataset(str(tmp_path / "out.zip"))[0][0]
    assert img.shape == (3, 16, 16)
    assert np.all(img[:, 4:12] == 200) and np.all(img[:, :4] == 0) and np.all(img[:, 12:] == 0)


def test_labels_in_source_dataset_json_are_carried_over(tmp_path):
    for i in range(3):
        _save(str(tmp_path / f"src/sub/{i}.png"), np.full((8, 8, 3), i, np.uint8))
    (tmp_path / "src/dataset.json").write_text(
        json.dumps({"labels": [["sub/0.png", 2], ["sub/1.png", 0], ["sub/2.png", 1]]})
    )
    _convert(tmp_path / "src", tmp_path / "out.zip")
    ds = ImageFolderDataset(str(tmp_path / "out.zip"), use_labels=True)
    assert [int(np.argmax(ds[i][1])) for i in range(3)] == [2, 0, 1]
    with zipfile.ZipFile(tmp_path / "out.zip") as zf:
        assert json.loads(zf.read("dataset.json"))["labels"][0] == ["00000/img00000000.png", 2]


@pytest.mark.parametrize("kind", ["zip", "folder"])
def test_failure_leaves_no_output_and_keeps_the_old_one(tmp_path, kind):
    noise = np.random.RandomState(5).randint(0, 256, size=(2, 16, 16, 3), dtype=np.uint8)
    _save(str(tmp_path / "src/a.png"), noise[0])
    _save(str(tmp_path / "src/b.png"), noise[1])
    dest = tmp_path / ("out.zip" if kind == "zip" else "out")
    if kind == "zip":
        _convert(tmp_path / "src", dest)
        before = dest.read_bytes()
    data = (tmp_path / "src/b.png").read_bytes()
    (tmp_path / "src/b.png").write_bytes(data[: len(data) // 2])  # header survives, pixels do not
    with pytest.raises(DatasetError, match="b.png"):
        _convert(tmp_path / "src", dest)
    assert sorted(os.listdir(tmp_path)) == (["out.zip", "src"] if kind == "zip" else ["src"])
    if kind == "zip":
        assert dest.read_bytes() == before


def test_non_empty_dest_folder_is_refused(tmp_path):
    _save(str(tmp_path / "src/a.png"), np.zeros((8, 8, 3), np.uint8))
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("mine")
    with pytest.raises(DatasetError, match="not an empty folder"):
        _convert(tmp_path / "src", tmp_path / "out")
    assert os.listdir(tmp_path / "out") == ["keep.txt"]


def test_cli_reports_bad_arguments_and_documents_the_filter(tmp_path):
    runner = CliRunner()
    help_text = runner.invoke(dataset_tool.main, ["--help"]).output
    assert "FID" in help_text and "box" in help_text and "white" in help_text
    result = runner.invoke(
        dataset_tool.main, ["--source", str(tmp_path / "nowhere"), "--dest", str(tmp_path / "o.zip")]
    )
    assert result.exit_code != 0 and "nowhere" in result.output
    _save(str(tmp_path / "src/a.png"), np.zeros((8, 8, 3), np.uint8))
    result = runner.invoke(
        dataset_tool.main,
        ["--source", str(tmp_path / "src"), "--dest", str(tmp_path / "o.zip"), "--resolution", "24x24"],
    )
    assert result.exit_code != 0 and "power-of-two" in result.output
    result = runner.invoke(
        dataset_tool.main,
        ["--source", str(tmp_path / "src"), "--dest", str(tmp_path / "o.zip"), "--resolution", "16x16"],
    )
    assert result.exit_code == 0, result.output
    assert ImageFolderDataset(str(tmp_path / "o.zip")).resolution == 16


# ---------------------------------------------------------------- the real emoji set


def test_real_emoji_of_every_colour_type_convert_cleanly(tmp_path):
    emoji = shared_path("data", "images", "emojitwo_png64")
    picks = {}  # one or two files per (mode, has transparency key)
    for fname in sorted(os.listdir(emoji)):
        if fname.endswith(".png"):
            with PIL.Image.open(emoji / fname) as img:
                key = (img.mode, "transparency" in img.info)
            if len(picks.setdefault(key, [])) < 2:
                picks[key].append(fname)
    assert {"RGBA", "P", "RGB", "LA"} <= {mode for mode, _ in picks}
    chosen = sorted(f for files in picks.values() for f in files)
    for fname in chosen:
        shutil.copy(emoji / fname, tmp_path / fname)
    n, messages = _convert(tmp_path, tmp_path / "out" / "emoji.zip", resolution="32x32", resize_filter="box")
    assert n == len(chosen) and "white" in messages
    ds = ImageFolderDataset(str(tmp_path / "out" / "emoji.zip"))
    assert ds.image_shape == [3, 32, 32]
    for i, fname in enumerate(chosen):
        with PIL.Image.open(tmp_path / fname) as img:
            rgba = np.asarray(img.convert("RGBA"))
        expected = _composite_over_white(rgba).reshape(32, 2, 32, 2, 3).mean(axis=(1, 3))  # box = 2x2 means
        assert np.abs(ds[i][0].transpose(1, 2, 0) - expected).max() <= 1.5, fname


# ---------------------------------------------------------------- class labels from sub-folder names


def _class_folders(root, classes, per_class=2, size=(8, 8), ext="png"):
    """Images in one sub-folder per class, each filled with its class number; returns {relative path: class name}."""
    made = {}
    for name in classes:
        for i in range(per_class):
            rel = f"{name}/{i}.{ext}"
            _save(str(root / rel), np.full(size[::-1], len(made), np.uint8), "L")
            made[rel] = name
    return made


def test_folder_labels_follow_sorted_folder_names(tmp_path):
    made = _class_folders(tmp_path / "src", ["s2", "s10", "s1"])
    n, messages = _convert(tmp_path / "src", tmp_path / "out.zip", labels="folders")
    assert n == 6 and "3 class folders" in messages and "0=s1, 1=s10, 2=s2" in messages
    with zipfile.ZipFile(tmp_path / "out.zip") as zf:
        meta = json.loads(zf.read("dataset.json"))
    assert meta["class_names"] == ["s1", "s10", "s2"]  # plain sorted(), as torchvision's ImageFolder
    ds = ImageFolderDataset(str(tmp_path / "out.zip"), use_labels=True)
    assert ds.label_dim == 3
    sources = sorted(made)  # images are written in sorted path order
    for i, rel in enumerate(sources):
        assert meta["class_names"][int(np.argmax(ds[i][1]))] == made[rel]
        assert meta["labels"][i][1] == ["s1", "s10", "s2"].index(made[rel])


def test_folder_labels_skip_a_folder_wrapping_everything_and_take_nested_images(tmp_path):
    _class_folders(tmp_path / "src" / "att_faces", ["s1", "s2"])
    _save(str(tmp_path / "src" / "att_faces" / "s2" / "extra" / "x.png"), np.zeros((8, 8), np.uint8), "L")
    with zipfile.ZipFile(tmp_path / "faces.zip", "w") as zf:
        for path in sorted((tmp_path / "src").rglob("*.png")):
            zf.write(path, path.relative_to(tmp_path / "src").as_posix())
    n, _ = _convert(tmp_path / "faces.zip", tmp_path / "out.zip", labels="folders")
    with zipfile.ZipFile(tmp_path / "out.zip") as zf:
        meta = json.loads(zf.read("dataset.json"))
    assert n == 5 and meta["class_names"] == ["s1", "s2"]
    assert [label for _fname, label in meta["labels"]] == [0, 0, 1, 1, 1]


def test_folder_labels_need_every_image_in_a_class_folder(tmp_path):
    _class_folders(tmp_path / "src", ["a", "b"])
    _save(str(tmp_path / "src" / "loose.png"), np.zeros((8, 8), np.uint8), "L")
    with pytest.raises(DatasetError, match="1 image.*not in a class sub-folder.*loose.png"):
        _convert(tmp_path / "src", tmp_path / "out.zip", labels="folders")
    _class_folders(tmp_path / "one", ["only"])
    with pytest.raises(DatasetError, match="all in only/.*one sub-folder per class"):
        _convert(tmp_path / "one", tmp_path / "out.zip", labels="folders")
    assert not (tmp_path / "out.zip").exists()


def test_folder_labels_replace_dataset_json_and_none_drops_labels(tmp_path):
    _class_folders(tmp_path / "src", ["a", "b"], per_class=1)
    (tmp_path / "src" / "dataset.json").write_text(json.dumps({"labels": [["a/0.png", 7], ["b/0.png", 7]]}))
    _n, messages = _convert(tmp_path / "src", tmp_path / "folders.zip", labels="folders")
    assert "Ignoring the labels" in messages
    assert ImageFolderDataset(str(tmp_path / "folders.zip"), use_labels=True).label_dim == 2
    _n, messages = _convert(tmp_path / "src", tmp_path / "none.zip", labels="none")
    assert "Ignoring the labels" in messages
    with zipfile.ZipFile(tmp_path / "none.zip") as zf:
        assert json.loads(zf.read("dataset.json")) == {"labels": None}
    _convert(tmp_path / "src", tmp_path / "json.zip")
    assert ImageFolderDataset(str(tmp_path / "json.zip"), use_labels=True).label_dim == 8


def test_folder_labels_are_refused_for_sources_with_their_own_classes(tmp_path):
    with pytest.raises(DatasetError, match="--labels=folders.*sklearn:digits"):
        _convert("sklearn:digits", tmp_path / "out.zip", labels="folders")
    n, _ = _convert("sklearn:digits", tmp_path / "out.zip", labels="none", max_images=5)
    assert n == 5 and not ImageFolderDataset(str(tmp_path / "out.zip"), use_labels=True).has_labels


def test_cli_folder_labels_and_pad(tmp_path):
    _class_folders(tmp_path / "src", ["a", "b"], size=(6, 8))
    result = CliRunner().invoke(
        dataset_tool.main,
        [
            "--source",
            str(tmp_path / "src"),
            "--dest",
            str(tmp_path / "o.zip"),
            "--labels=folders",
            "--transform=pad",
            "--resolution=8x8",
        ],
    )
    assert result.exit_code == 0, result.output
    ds = ImageFolderDataset(str(tmp_path / "o.zip"), use_labels=True)
    assert ds.label_dim == 2 and ds.image_shape == [1, 8, 8]
    assert np.all(ds[0][0][0, :, :1] == 0) and np.all(ds[0][0][0, :, 7:] == 0)  # 6 wide: one black column each side


# ---------------------------------------------------------------- pad, center-crop-wide on tall images, upscaling


def test_pad_keeps_the_whole_portrait_image_between_black_borders(tmp_path):
    tall = np.random.RandomState(6).randint(1, 256, size=(16, 10, 3), dtype=np.uint8)
    _save(str(tmp_path / "src/a.png"), tall)
    n, messages = _convert(tmp_path / "src", tmp_path / "out.zip", transform="pad", resolution="16x16")
    assert n == 1 and "Padding 1" in messages and "black" in messages and "Warning: upscaling" not in messages
    img = ImageFolderDataset(str(tmp_path / "out.zip"))[0][0].transpose(1, 2, 0)
    assert np.array_equal(img[:, 3:13], tall)  # longer side already 16: not resampled, centred
    assert np.all(img[:, :3] == 0) and np.all(img[:, 13:] == 0)


def test_pad_scales_the_longer_side_of_a_landscape_image(tmp_path):
    _save(str(tmp_path / "src/a.png"), np.full((20, 40), 90, np.uint8), "L")
    _n, messages = _convert(tmp_path / "src", tmp_path / "out.zip", transform="pad")
    assert "writing 32x32" in messages and "longer" in messages  # largest power of two that fits the longer side
    img = ImageFolderDataset(str(tmp_path / "out.zip"))[0][0][0]
    assert img.shape == (32, 32)
    assert np.all(img[8:24] == 90) and np.all(img[:8] == 0) and np.all(img[24:] == 0)  # 40x20 -> 32x16 band


def test_center_crop_wide_refuses_a_square_resolution(tmp_path):
    _save(str(tmp_path / "src/a.png"), np.zeros((112, 92), np.uint8), "L")
    with pytest.raises(click.BadParameter, match="needs H < W.*--transform=pad"):
        _convert(tmp_path / "src", tmp_path / "out.zip", transform="center-crop-wide", resolution="64x64")


def test_center_crop_wide_warns_about_tall_images(tmp_path):
    _save(str(tmp_path / "src/a_tall.png"), np.zeros((112, 92), np.uint8), "L")
    _save(str(tmp_path / "src/b_wide.png"), np.zeros((48, 64), np.uint8), "L")
    _n, messages = _convert(tmp_path / "src", tmp_path / "out.zip", transform="center-crop-wide", resolution="64x32")
    assert "1 of 2 image(s) are taller than wide" in messages and "a_tall.png, 92x112" in messages
    assert "--transform=pad" in messages


def test_upscaling_is_reported_with_count_and_factor(tmp_path):
    _save(str(tmp_path / "src/a_small.png"), np.zeros((112, 92), np.uint8), "L")
    _save(str(tmp_path / "src/b_big.png"), np.zeros((256, 256), np.uint8), "L")
    _n, messages = _convert(tmp_path / "src", tmp_path / "out.zip", resolution="128x128")
    assert "upscaling 1 of 2 image(s) to 128x128, by 1.39x" in messages and "a_small.png, 92x112" in messages
    assert "--resolution=64x64 would upscale none" in messages
    _n, messages = _convert(tmp_path / "src", tmp_path / "pad.zip", resolution="128x128", transform="pad")
    assert "by 1.14x" in messages  # pad scales the longer side: 112 -> 128
    _n, messages = _convert(tmp_path / "src", tmp_path / "small.zip", resolution="64x64")
    assert "Warning: upscaling" not in messages


def test_att_like_pgm_faces_in_person_folders(tmp_path):
    rng = np.random.RandomState(7)
    for person in range(1, 4):
        for shot in range(1, 3):
            path = tmp_path / "att" / f"s{person}" / f"{shot}.pgm"
            os.makedirs(path.parent, exist_ok=True)
            PIL.Image.fromarray(rng.randint(0, 256, size=(112, 92), dtype=np.uint8), "L").save(path)
    (tmp_path / "att" / "README").write_text("ORL faces")
    n, messages = _convert(
        tmp_path / "att", tmp_path / "faces.zip", transform="pad", labels="folders", resolution="64x64"
    )
    assert n == 6 and "Skipped 1 non-image file(s): README" in messages and "Warning: upscaling" not in messages
    ds = ImageFolderDataset(str(tmp_path / "faces.zip"), use_labels=True)
    assert ds.image_shape == [1, 64, 64] and ds.label_dim == 3
    assert ds.verify_decodable() == 6


def test_non_image_files_are_listed_when_skipped(tmp_path):
    _save(str(tmp_path / "src/a.png"), np.zeros((8, 8, 3), np.uint8))
    for name in ("notes.txt", "b/info.csv", "c.doc", "d.md"):
        os.makedirs((tmp_path / "src" / name).parent, exist_ok=True)
        (tmp_path / "src" / name).write_text("x")
    (tmp_path / "src" / ".DS_Store").write_text("x")  # hidden files are not worth a note
    _n, messages = _convert(tmp_path / "src", tmp_path / "out.zip")
    assert "Skipped 4 non-image file(s): b/info.csv, c.doc, d.md (and 1 more)." in messages
    assert ".DS_Store" not in messages


# ---------------------------------------------------------------- damaged sources


def test_decompression_bomb_in_the_source_is_named(tmp_path):
    _save(str(tmp_path / "src/a.png"), np.zeros((8, 8, 3), np.uint8))
    (tmp_path / "src" / "b_bomb.png").write_bytes(png_claiming_size(20000, 20000))
    with pytest.raises(DatasetError, match=r"b_bomb\.png: cannot read image: 400,000,000 pixels, over the limit"):
        _convert(tmp_path / "src", tmp_path / "out.zip")
    result = CliRunner().invoke(
        dataset_tool.main, ["--source", str(tmp_path / "src"), "--dest", str(tmp_path / "o.zip")]
    )
    assert result.exit_code != 0 and "b_bomb.png" in result.output and "Traceback" not in result.output


def test_bad_crc_in_a_source_zip_is_named(tmp_path):
    noise = np.random.RandomState(8).randint(0, 256, size=(2, 32, 32, 3), dtype=np.uint8)
    with zipfile.ZipFile(tmp_path / "src.zip", "w") as zf:
        for i in range(2):
            buffer = io.BytesIO()
            PIL.Image.fromarray(noise[i]).save(buffer, format="png")
            zf.writestr(f"imgs/{i}.png", buffer.getvalue())
    corrupt_stored_member(tmp_path / "src.zip", "imgs/1.png")
    with pytest.raises(DatasetError, match=r"src\.zip:imgs/1\.png: cannot read image: damaged zip member.*CRC"):
        _convert(tmp_path / "src.zip", tmp_path / "out.zip")
    assert not (tmp_path / "out.zip").exists()


def test_a_member_that_inflates_beyond_any_image_is_refused_from_the_zip_directory(tmp_path, monkeypatch):
    """The declared size is read from the zip's directory, before one byte is inflated (a small zip can hold a
    member of gigabytes); nothing is written."""

    png = io.BytesIO()
    PIL.Image.fromarray(np.random.RandomState(0).randint(0, 256, (32, 32, 3), dtype=np.uint8)).save(png, "PNG")
    source = tmp_path / "in.zip"
    with zipfile.ZipFile(source, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("big.png", png.getvalue())
    monkeypatch.setattr(dataset_sources, "MAX_IMAGE_FILE_BYTES", len(png.getvalue()) - 1)
    read = []
    monkeypatch.setattr(zipfile.ZipFile, "read", lambda self, name, pwd=None: read.append(name) or b"")
    result = CliRunner().invoke(dataset_tool.main, [f"--source={source}", f"--dest={tmp_path / 'out.zip'}"])
    assert result.exit_code != 0 and f"{source}:big.png: {len(png.getvalue()):,} bytes, more than" in result.output
    assert read == [] and not (tmp_path / "out.zip").exists() and "Traceback" not in result.output


@pytest.mark.parametrize("dest_name", ["made/here/out.zip", "made/here/out"])
def test_a_full_disk_is_one_line_and_leaves_no_temporary_output(tmp_path, monkeypatch, dest_name):
    source = tmp_path / "src"
    source.mkdir()
    for i in range(4):
        _save(source / f"{i}.png", np.full([8, 8, 3], 40 * i, dtype=np.uint8))
    real_writestr, real_open, written = zipfile.ZipFile.writestr, open, []

    def full_after_two(count):
        if len(written) == 2:
            raise OSError(28, "No space left on device")
        written.append(count)

    def writestr(self, name, data, *args, **kwargs):
        full_after_two(name)
        return real_writestr(self, name, data, *args, **kwargs)

    def open_for_png(path, mode="r", *args, **kwargs):
        if "w" in mode and str(path).endswith(".png"):
            full_after_two(path)
        return real_open(path, mode, *args, **kwargs)

    monkeypatch.setattr(zipfile.ZipFile, "writestr", writestr)
    monkeypatch.setattr("builtins.open", open_for_png)
    result = CliRunner().invoke(dataset_tool.main, [f"--source={source}", f"--dest={tmp_path / dest_name}"])
    assert result.exit_code == 1, result.output
    assert "Error: --dest: no space left on device while writing" in result.output
    assert "nothing was written" in result.output and "Traceback" not in result.output
    assert len(written) == 2 and not (tmp_path / "made").exists()


# ---------------------------------------------------------------- one colour rule: --background and --pad-colour


def test_a_transparent_tall_sprite_gets_the_chosen_background_and_pad_colour(tmp_path):
    sprite = np.zeros((16, 8, 4), np.uint8)
    sprite[4:12, 2:6] = (200, 10, 10, 255)  # an opaque red bar; the rest of the sprite fully transparent
    _save(str(tmp_path / "src/a.png"), sprite, "RGBA")
    result = CliRunner().invoke(
        dataset_tool.main,
        [
            f"--source={tmp_path / 'src'}",
            f"--dest={tmp_path / 'out.zip'}",
            "--transform=pad",
            "--background=0,0,255",
            "--pad-colour=#00ff00",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "RGB(0, 0, 255) background (--background)" in result.output and "RGB(0, 255, 0) borders" in result.output
    img = ImageFolderDataset(str(tmp_path / "out.zip"))[0][0].transpose(1, 2, 0)
    assert (img[:, :4] == (0, 255, 0)).all() and (img[:, 12:] == (0, 255, 0)).all()  # the pad bars
    assert (img[0, 4:12] == (0, 0, 255)).all()  # the sprite's transparent part
    assert (img[4:12, 6:10] == (200, 10, 10)).all()


def test_a_grey_pad_colour_is_its_luma_in_a_greyscale_set(tmp_path):
    _save(str(tmp_path / "src/a.png"), np.full((8, 4), 90, np.uint8), "L")
    _n, messages = _convert(tmp_path / "src", tmp_path / "out.zip", transform="pad", pad_colour=(255, 255, 255))
    img = ImageFolderDataset(str(tmp_path / "out.zip"))[0][0][0]
    assert (img[:, :2] == 255).all() and (img[:, 2:6] == 90).all() and "white borders" in messages


@pytest.mark.parametrize(
    "flag", ["--background=purple", "--pad-colour=1,2", "--background=0,0,256", "--pad-colour=#12"]
)
def test_an_unreadable_colour_is_refused_naming_the_flag_before_anything_is_written(tmp_path, flag):
    _save(str(tmp_path / "src/a.png"), np.zeros((8, 8), np.uint8), "L")
    result = CliRunner().invoke(
        dataset_tool.main, [f"--source={tmp_path / 'src'}", f"--dest={tmp_path / 'o.zip'}", flag]
    )
    assert result.exit_code == 2 and flag.split("=")[0] in result.output and "is not a colour" in result.output
    assert not (tmp_path / "o.zip").exists()
