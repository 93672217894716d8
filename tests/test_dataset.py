"""ImageFolderDataset / DigitsDataset: what comes out equals what was written, and bad input names the file."""

import json
import os
import pickle
import zipfile

import numpy as np
import PIL.Image
import pytest
import torch
from damaged_files import corrupt_stored_member, png_claiming_size

from training.dataset import DatasetError, DigitsDataset, ImageFolderDataset, open_dataset, select_subset


def _write_png(path, array, mode=None):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    PIL.Image.fromarray(array, mode).save(path)


def _make_folder(root, n=6, res=8, channels=3, seed=0, labels=None):
    """Folder of n random PNGs in two sub-folders; returns (fnames, uint8 [n, C, H, W])."""
    rng = np.random.RandomState(seed)
    images = rng.randint(0, 256, size=(n, res, res, channels), dtype=np.uint8)
    fnames = [f"{i // 3:05d}/img{i:08d}.png" for i in range(n)]
    for fname, img in zip(fnames, images):
        _write_png(os.path.join(root, fname), img[:, :, 0] if channels == 1 else img)
    if labels is not None:
        with open(os.path.join(root, "dataset.json"), "w") as f:
            json.dump({"labels": [[fname, lab] for fname, lab in zip(fnames, labels)]}, f)
    return fnames, images.transpose(0, 3, 1, 2)


def _zip_folder(root, zip_path):
    with zipfile.ZipFile(zip_path, "w") as zf:
        for dirpath, _dirs, files in os.walk(root):
            for fname in files:
                full = os.path.join(dirpath, fname)
                zf.write(full, os.path.relpath(full, root).replace(os.sep, "/"))


def test_folder_images_equal_what_was_written(tmp_path):
    _fnames, images = _make_folder(tmp_path / "ds")
    ds = ImageFolderDataset(str(tmp_path / "ds"))
    assert len(ds) == 6 and ds.image_shape == [3, 8, 8] and ds.resolution == 8 and ds.num_channels == 3
    assert ds.name == "ds" and ds.label_dim == 0 and not ds.has_labels
    for i in range(6):
        img, label = ds[i]
        assert img.dtype == np.uint8 and np.array_equal(img, images[i])
        assert label.dtype == np.float32 and label.shape == (0,)


def test_zip_gives_the_same_items_as_the_folder(tmp_path):
    _make_folder(tmp_path / "ds", labels=[0, 1, 2, 0, 1, 2])
    _zip_folder(tmp_path / "ds", tmp_path / "ds.zip")
    a = ImageFolderDataset(str(tmp_path / "ds"), use_labels=True)
    b = ImageFolderDataset(str(tmp_path / "ds.zip"), use_labels=True)
    assert b.name == "ds" and len(a) == len(b)
    for i in range(len(a)):
        assert np.array_equal(a[i][0], b[i][0]) and np.array_equal(a[i][1], b[i][1])


def test_greyscale_images_have_one_channel(tmp_path):
    _fnames, images = _make_folder(tmp_path / "ds", channels=1)
    ds = ImageFolderDataset(str(tmp_path / "ds"))
    assert ds.image_shape == [1, 8, 8] and np.array_equal(ds[2][0], images[2])


def test_xflip_doubles_length_with_mirrored_copies(tmp_path):
    _fnames, images = _make_folder(tmp_path / "ds")
    ds = ImageFolderDataset(str(tmp_path / "ds"), xflip=True)
    assert len(ds) == 12
    for i in range(6):
        assert np.array_equal(ds[i][0], images[i])
        assert np.array_equal(ds[i + 6][0], images[i][:, :, ::-1])


def test_max_size_subset_follows_the_official_rule(tmp_path):
    expected = np.arange(10)
    np.random.RandomState(5).shuffle(expected)
    assert np.array_equal(select_subset(10, 4, 5), np.sort(expected[:4]))
    assert np.array_equal(select_subset(10, 20, 5), np.arange(10))
    assert np.array_equal(select_subset(10, None, 5), np.arange(10))
    _fnames, images = _make_folder(tmp_path / "ds", n=10)
    ds = ImageFolderDataset(str(tmp_path / "ds"), max_size=4, random_seed=5, xflip=True)
    assert len(ds) == 8
    for i, raw in enumerate(np.sort(expected[:4])):
        assert np.array_equal(ds[i][0], images[raw])
    other = ImageFolderDataset(str(tmp_path / "ds"), max_size=4, random_seed=6)
    assert [other.get_details(i)["raw_idx"] for i in range(4)] != [ds.get_details(i)["raw_idx"] for i in range(4)]


@pytest.mark.parametrize("bad", [0, -3, 2.5])
def test_max_size_must_be_positive_integer(tmp_path, bad):
    _make_folder(tmp_path / "ds")
    with pytest.raises(DatasetError, match="max_size"):
        ImageFolderDataset(str(tmp_path / "ds"), max_size=bad)


def test_class_labels_become_one_hot(tmp_path):
    _make_folder(tmp_path / "ds", labels=[0, 3, 1, 3, 2, 0])
    ds = ImageFolderDataset(str(tmp_path / "ds"), use_labels=True)
    assert ds.has_labels and ds.label_dim == 4 and ds.label_shape == [4]
    assert np.array_equal(ds[1][1], np.eye(4, dtype=np.float32)[3])
    assert np.array_equal(ds.get_label(4), np.eye(4, dtype=np.float32)[2])
    assert ImageFolderDataset(str(tmp_path / "ds"), use_labels=False).label_dim == 0


def test_vector_labels_are_kept(tmp_path):
    vectors = [[0.5 * i, -1.0] for i in range(6)]
    _make_folder(tmp_path / "ds", labels=vectors)
    ds = ImageFolderDataset(str(tmp_path / "ds"), use_labels=True, xflip=True)
    assert ds.label_dim == 2 and np.allclose(ds[9][1], vectors[3])


def test_missing_label_names_the_image(tmp_path):
    fnames, _ = _make_folder(tmp_path / "ds", labels=[0, 1, 2, 0, 1, 2])
    meta = json.loads((tmp_path / "ds" / "dataset.json").read_text())
    meta["labels"] = meta["labels"][:4] + meta["labels"][5:]
    (tmp_path / "ds" / "dataset.json").write_text(json.dumps(meta))
    with pytest.raises(DatasetError, match=fnames[4]):
        ImageFolderDataset(str(tmp_path / "ds"), use_labels=True)


@pytest.mark.parametrize(
    "text, match",
    [
        ('{"labels": [["a.png", 1]', "not valid JSON"),
        ("[1, 2]", '"labels" key'),
        ('{"labels": 5}', "list of"),
        ('{"labels": [["00000/img00000000.png"]]}', r"labels\[0\]"),
        ('{"labels": [["00000/img00000000.png", "cat"]]}', "class index"),
    ],
)
def test_malformed_labels_json_is_reported(tmp_path, text, match):
    _make_folder(tmp_path / "ds")
    (tmp_path / "ds" / "dataset.json").write_text(text)
    with pytest.raises(DatasetError, match="dataset.json") as info:
        ImageFolderDataset(str(tmp_path / "ds"), use_labels=True)
    assert info.match(match)


def test_null_labels_mean_unconditional(tmp_path):
    _make_folder(tmp_path / "ds")
    (tmp_path / "ds" / "dataset.json").write_text('{"labels": null}')
    assert ImageFolderDataset(str(tmp_path / "ds"), use_labels=True).label_dim == 0


def test_corrupt_image_is_named(tmp_path):
    fnames, _ = _make_folder(tmp_path / "ds")
    (tmp_path / "ds" / fnames[2]).write_bytes(b"this is not a png")
    with pytest.raises(DatasetError, match=fnames[2]):
        ImageFolderDataset(str(tmp_path / "ds"))


def test_truncated_image_is_named_when_loaded(tmp_path):
    fnames, _ = _make_folder(tmp_path / "ds", res=32)
    path = tmp_path / "ds" / fnames[3]
    path.write_bytes(path.read_bytes()[:60])  # header intact, pixel data cut
    ds = ImageFolderDataset(str(tmp_path / "ds"))
    ds[0]
    with pytest.raises(DatasetError, match=fnames[3]):
        ds[3]


def test_mixed_sizes_name_the_odd_file(tmp_path):
    _make_folder(tmp_path / "ds")
    _write_png(str(tmp_path / "ds" / "zz_big.png"), np.zeros((16, 16, 3), np.uint8))
    with pytest.raises(DatasetError, match="zz_big.png.*16x16"):
        ImageFolderDataset(str(tmp_path / "ds"))


def test_mixed_channels_name_the_odd_file(tmp_path):
    _make_folder(tmp_path / "ds")
    _write_png(str(tmp_path / "ds" / "zz_grey.png"), np.zeros((8, 8), np.uint8))
    with pytest.raises(DatasetError, match="zz_grey.png"):
        ImageFolderDataset(str(tmp_path / "ds"))


@pytest.mark.parametrize("shape, match", [((8, 16, 3), "not square"), ((12, 12, 3), "power of two")])
def test_unusable_sizes_are_rejected_with_the_fix(tmp_path, shape, match):
    _write_png(str(tmp_path / "ds" / "a.png"), np.zeros(shape, np.uint8))
    with pytest.raises(DatasetError, match=match) as info:
        ImageFolderDataset(str(tmp_path / "ds"))
    assert info.match("a.png") and info.match("dataset_tool.py")


def test_rgba_is_rejected_with_the_fix(tmp_path):
    _write_png(str(tmp_path / "ds" / "a.png"), np.zeros((8, 8, 4), np.uint8))
    with pytest.raises(DatasetError, match="a.png.*'RGBA'.*dataset_tool.py"):
        ImageFolderDataset(str(tmp_path / "ds"))


def test_resolution_mismatch_is_reported(tmp_path):
    _make_folder(tmp_path / "ds")
    with pytest.raises(DatasetError, match="resolution=16"):
        ImageFolderDataset(str(tmp_path / "ds"), resolution=16)
    assert ImageFolderDataset(str(tmp_path / "ds"), resolution=8).resolution == 8


def test_empty_or_missing_paths_are_reported(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no images here")
    with pytest.raises(DatasetError, match="no images found"):
        ImageFolderDataset(str(tmp_path / "empty"))
    with pytest.raises(DatasetError, match="does not exist"):
        ImageFolderDataset(str(tmp_path / "nowhere"))
    (tmp_path / "file.png").write_bytes(b"x")
    with pytest.raises(DatasetError, match="not a folder or a zip"):
        ImageFolderDataset(str(tmp_path / "file.png"))


def test_macos_debris_and_hidden_files_are_ignored(tmp_path):
    _make_folder(tmp_path / "ds", n=3)
    _zip_folder(tmp_path / "ds", tmp_path / "ds.zip")
    with zipfile.ZipFile(tmp_path / "ds.zip", "a") as zf:
        zf.writestr("__MACOSX/00000/._img00000000.png", b"resource fork")
        zf.writestr("00000/._img00000001.png", b"resource fork")
    assert len(ImageFolderDataset(str(tmp_path / "ds.zip"))) == 3


def test_zip_dataset_survives_pickling_for_loader_workers(tmp_path):
    _fnames, images = _make_folder(tmp_path / "ds")
    _zip_folder(tmp_path / "ds", tmp_path / "ds.zip")
    ds = ImageFolderDataset(str(tmp_path / "ds.zip"))
    ds[0]  # opens the zip handle, which must not be pickled
    clone = pickle.loads(pickle.dumps(ds))
    assert np.array_equal(clone[5][0], images[5])
    batch_images, batch_labels = next(iter(torch.utils.data.DataLoader(ds, batch_size=4)))
    assert batch_images.shape == (4, 3, 8, 8) and batch_images.dtype == torch.uint8
    assert batch_labels.shape == (4, 0)


def test_embedded_digits_are_scikit_learn_digits_upsampled():
    from sklearn.datasets import load_digits

    digits = load_digits()
    ds = DigitsDataset(use_labels=True)
    assert len(ds) == 1797 and ds.image_shape == [3, 32, 32] and ds.name == "digits32"
    assert ds.label_dim == 10
    img, label = ds[7]
    assert np.array_equal(img[0], img[1]) and np.array_equal(img[0], img[2])
    assert np.argmax(label) == digits.target[7] and label.sum() == 1
    # the 4x4 block means of the bicubic upsample track the 8x8 source (scaled to 0..255)
    source = digits.images[7] * 255 / 16
    blocks = img[0].astype(np.float64).reshape(8, 4, 8, 4).mean(axis=(1, 3))
    assert np.abs(blocks - source).mean() < 12 and np.corrcoef(blocks.ravel(), source.ravel())[0, 1] > 0.95
    native = DigitsDataset(resolution=8, num_channels=1)
    assert native.image_shape == [1, 8, 8]
    assert np.array_equal(native[7][0][0], np.rint(source).astype(np.uint8))


def test_embedded_digits_subset_and_mirror():
    ds = DigitsDataset(max_size=200, xflip=True, random_seed=1)
    assert len(ds) == 400
    assert np.array_equal(ds[0][0][:, :, ::-1], ds[200][0])
    with pytest.raises(DatasetError, match="power of two"):
        DigitsDataset(resolution=24)


def test_open_dataset_dispatches_on_path(tmp_path):
    _make_folder(tmp_path / "ds")
    assert isinstance(open_dataset(str(tmp_path / "ds"), xflip=True), ImageFolderDataset)
    assert isinstance(open_dataset(None, max_size=10), DigitsDataset)
    assert len(open_dataset("sklearn:digits", max_size=10)) == 10
    official = dict(
        class_name="training.dataset.ImageFolderDataset",
        path=str(tmp_path / "ds"),
        use_labels=False,
        max_size=6,
        xflip=False,
        resolution=8,
    )
    assert len(open_dataset(**official)) == 6


# ---------------------------------------------------------------- labels are bounded and well-formed


def test_absurd_class_index_is_refused_naming_file_image_and_value(tmp_path):
    fnames, _ = _make_folder(tmp_path / "ds", labels=[0, 1, 2, 0, 10**9, 2])
    with pytest.raises(DatasetError) as info:
        ImageFolderDataset(str(tmp_path / "ds"), use_labels=True)
    text = str(info.value)
    assert "dataset.json" in text and fnames[4] in text and "1000000000" in text and "100000" in text
    assert "\n" not in text


def test_largest_allowed_class_index_still_opens(tmp_path):
    from training.dataset import MAX_LABEL_DIM

    _make_folder(tmp_path / "ds", labels=[0, 1, 2, 0, MAX_LABEL_DIM - 1, 2])
    assert ImageFolderDataset(str(tmp_path / "ds"), use_labels=True).label_dim == MAX_LABEL_DIM


def test_label_vectors_of_different_lengths_name_both_images(tmp_path):
    fnames, _ = _make_folder(tmp_path / "ds", labels=[[0.0, 1.0]] * 3 + [[1.0, 2.0, 3.0]] + [[0.0, 1.0]] * 2)
    with pytest.raises(DatasetError, match=rf"{fnames[3]}.*3 values.*{fnames[0]}.*has 2"):
        ImageFolderDataset(str(tmp_path / "ds"), use_labels=True)


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity", "1e39", "1" + "0" * 400])
def test_non_finite_label_values_are_refused(tmp_path, value):
    fnames, _ = _make_folder(tmp_path / "ds")
    entries = ", ".join(f'["{fname}", [0.5, {value if i == 2 else "1.0"}]]' for i, fname in enumerate(fnames))
    (tmp_path / "ds" / "dataset.json").write_text('{"labels": [' + entries + "]}")
    with pytest.raises(DatasetError, match=rf"{fnames[2]}.*finite"):
        ImageFolderDataset(str(tmp_path / "ds"), use_labels=True)


# ---------------------------------------------------------------- images are decoded before training starts


def _truncate(path, keep=60):
    path.write_bytes(path.read_bytes()[:keep])  # the header survives, the pixel data does not


def test_verify_decodable_finds_a_truncated_image_that_opening_does_not(tmp_path):
    fnames, _ = _make_folder(tmp_path / "ds", n=6, res=32)
    _truncate(tmp_path / "ds" / fnames[3])
    ds = ImageFolderDataset(str(tmp_path / "ds"))  # headers are fine
    with pytest.raises(DatasetError, match=rf"{fnames[3]}: cannot decode image: truncated") as info:
        ds.verify_decodable()
    assert "dataset_tool.py" in str(info.value) and "\n" not in str(info.value)


def test_verify_decodable_sample_is_deterministic_and_holds_the_first_and_last(tmp_path, monkeypatch):
    _make_folder(tmp_path / "ds", n=30)
    ds = ImageFolderDataset(str(tmp_path / "ds"))
    seen = []
    original = ImageFolderDataset._load_raw_image
    monkeypatch.setattr(ImageFolderDataset, "_load_raw_image", lambda self, i: seen.append(i) or original(self, i))
    assert ds.verify_decodable(sample=5) == len(seen) == 7
    assert seen[0] == 0 and seen[-1] == 29 and seen == sorted(set(seen))
    first = list(seen)
    seen.clear()
    ImageFolderDataset(str(tmp_path / "ds")).verify_decodable(sample=5)
    assert seen == first
    seen.clear()
    assert ds.verify_decodable(sample=None) == 30 and seen == list(range(30))
    seen.clear()
    assert ds.verify_decodable(sample=0) == 2 and seen == [0, 29]
    for bad in (-1, 2.5):
        with pytest.raises(DatasetError, match="sample must be an integer"):
            ds.verify_decodable(sample=bad)


def test_verify_decodable_checks_only_the_kept_subset(tmp_path):
    fnames, _ = _make_folder(tmp_path / "ds", n=10, res=32)
    kept = select_subset(10, 4, 0)
    dropped = next(i for i in range(10) if i not in kept)
    _truncate(tmp_path / "ds" / fnames[dropped])
    ds = ImageFolderDataset(str(tmp_path / "ds"), max_size=4, xflip=True)
    assert ds.verify_decodable(sample=None) == 4


def test_verify_decodable_on_embedded_digits():
    assert DigitsDataset(max_size=50).verify_decodable(sample=10) == 12


def test_bad_crc_in_a_zip_member_is_named_before_training(tmp_path):
    fnames, _ = _make_folder(tmp_path / "ds", n=6, res=32)
    _zip_folder(tmp_path / "ds", tmp_path / "ds.zip")
    corrupt_stored_member(tmp_path / "ds.zip", fnames[4])
    with pytest.raises(
        DatasetError, match=rf"ds\.zip:{fnames[4]}: cannot decode image: damaged zip member.*CRC"
    ) as info:
        ImageFolderDataset(str(tmp_path / "ds.zip")).verify_decodable()  # small members fail at open already
    assert "re-create it with dataset_tool.py" in str(info.value)


def test_bad_crc_in_a_zip_member_mid_run_is_named(tmp_path):
    fnames, _ = _make_folder(tmp_path / "ds", n=6, res=32)
    _zip_folder(tmp_path / "ds", tmp_path / "ds.zip")
    ds = ImageFolderDataset(str(tmp_path / "ds.zip"))
    corrupt_stored_member(tmp_path / "ds.zip", fnames[4])  # damaged after the checks, e.g. on a flaky disk
    ds[3]
    with pytest.raises(DatasetError, match=rf"ds\.zip:{fnames[4]}: cannot decode image: damaged zip member.*CRC"):
        ds[4]


def test_decompression_bomb_is_named_with_its_pixel_count(tmp_path):
    _make_folder(tmp_path / "ds", n=3)
    (tmp_path / "ds" / "zz_bomb.png").write_bytes(png_claiming_size(20000, 20000))
    with pytest.raises(DatasetError) as info:
        ImageFolderDataset(str(tmp_path / "ds"))
    text = str(info.value)
    assert "zz_bomb.png" in text and "400,000,000 pixels" in text and "decompression bomb" in text
    assert f"{2 * PIL.Image.MAX_IMAGE_PIXELS:,}" in text


def test_decompression_bomb_mid_run_is_a_dataset_error(tmp_path):
    fnames, _ = _make_folder(tmp_path / "ds", n=3)
    ds = ImageFolderDataset(str(tmp_path / "ds"))
    (tmp_path / "ds" / fnames[1]).write_bytes(png_claiming_size(20000, 20000))  # replaced after opening
    with pytest.raises(DatasetError, match=rf"{fnames[1]}: cannot decode image: 400,000,000 pixels"):
        ds[1]


def test_loader_worker_failure_is_the_one_line_dataset_error(tmp_path):
    fnames, _ = _make_folder(tmp_path / "ds", n=4, res=32)
    _truncate(tmp_path / "ds" / fnames[2])
    loader = torch.utils.data.DataLoader(ImageFolderDataset(str(tmp_path / "ds")), batch_size=4, num_workers=1)
    with pytest.raises(DatasetError) as info:
        next(iter(loader))
    text = str(info.value)
    assert text.startswith(str(tmp_path / "ds" / fnames[2])) and "truncated" in text
    assert "Traceback" not in text and "\n" not in text


# ---------------------------------------------------------------- folders of other image formats


def test_folder_of_other_image_formats_says_how_to_convert(tmp_path):
    (tmp_path / "faces").mkdir()
    for i in range(3):
        PIL.Image.fromarray(np.zeros((112, 92), np.uint8)).save(tmp_path / "faces" / f"s{i}.pgm")
    PIL.Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "faces" / "x.bmp")
    (tmp_path / "faces" / "README").write_text("ATT faces")
    with pytest.raises(DatasetError) as info:
        open_dataset(str(tmp_path / "faces"))
    text = str(info.value)
    assert "no PNG or JPEG images" in text and "3 .pgm, 1 (no extension), 1 .bmp" in text
    assert f"python dataset_tool.py --source={tmp_path / 'faces'} --dest={tmp_path / 'faces'}.zip" in text
