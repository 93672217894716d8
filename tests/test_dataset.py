"""ImageFolderDataset / DigitsDataset: what comes out equals what was written, and bad input names the file."""
import json
import os
import pickle
import zipfile

import numpy as np
import PIL.Image
import pytest
import torch

from training.dataset import DatasetError, ImageFolderDataset, open_dataset, select_subset
from training.embedded_data import DigitsDataset


def _write_png(path, array, mode=None):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    PIL.Image.fromarray(array, mode).save(path)


def _make_folder(root, n=6, res=8, channels=3, seed=0, labels=None):
    """Folder of n random PNGs in two sub-folders; returns (fnames, uint8 [n, C, H, W])."""
    rng = np.random.RandomState(seed)
    images = rng.randint(0, 256, size=(n, res, res, channels), dtype=np.uint8)
    fnames = [f'{i // 3:05d}/img{i:08d}.png' for i in range(n)]
    for fname, img in zip(fnames, images):
        _write_png(os.path.join(root, fname), img[:, :, 0] if channels == 1 else img)
    if labels is not None:
        with open(os.path.join(root, 'dataset.json'), 'w') as f:
            json.dump({'labels': [[fname, lab] for fname, lab in zip(fnames, labels)]}, f)
    return fnames, images.transpose(0, 3, 1, 2)


def _zip_folder(root, zip_path):
    with zipfile.ZipFile(zip_path, 'w') as zf:
        for dirpath, _dirs, files in os.walk(root):
            for fname in files:
                full = os.path.join(dirpath, fname)
                zf.write(full, os.path.relpath(full, root).replace(os.sep, '/'))


def test_folder_images_equal_what_was_written(tmp_path):
    _fnames, images = _make_folder(tmp_path / 'ds')
    ds = ImageFolderDataset(str(tmp_path / 'ds'))
    assert len(ds) == 6 and ds.image_shape == [3, 8, 8] and ds.resolution == 8 and ds.num_channels == 3
    assert ds.name == 'ds' and ds.label_dim == 0 and not ds.has_labels
    for i in range(6):
        img, label = ds[i]
        assert img.dtype == np.uint8 and np.array_equal(img, images[i])
        assert label.dtype == np.float32 and label.shape == (0,)


def test_zip_gives_the_same_items_as_the_folder(tmp_path):
    _make_folder(tmp_path / 'ds', labels=[0, 1, 2, 0, 1, 2])
    _zip_folder(tmp_path / 'ds', tmp_path / 'ds.zip')
    a = ImageFolderDataset(str(tmp_path / 'ds'), use_labels=True)
    b = ImageFolderDataset(str(tmp_path / 'ds.zip'), use_labels=True)
    assert b.name == 'ds' and len(a) == len(b)
    for i in range(len(a)):
        assert np.array_equal(a[i][0], b[i][0]) and np.array_equal(a[i][1], b[i][1])


def test_greyscale_images_have_one_channel(tmp_path):
    _fnames, images = _make_folder(tmp_path / 'ds', channels=1)
    ds = ImageFolderDataset(str(tmp_path / 'ds'))
    assert ds.image_shape == [1, 8, 8] and np.array_equal(ds[2][0], images[2])


def test_xflip_doubles_length_with_mirrored_copies(tmp_path):
    _fnames, images = _make_folder(tmp_path / 'ds')
    ds = ImageFolderDataset(str(tmp_path / 'ds'), xflip=True)
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
    _fnames, images = _make_folder(tmp_path / 'ds', n=10)
    ds = ImageFolderDataset(str(tmp_path / 'ds'), max_size=4, random_seed=5, xflip=True)
    assert len(ds) == 8
    for i, raw in enumerate(np.sort(expected[:4])):
        assert np.array_equal(ds[i][0], images[raw])
    other = ImageFolderDataset(str(tmp_path / 'ds'), max_size=4, random_seed=6)
    assert [other.get_details(i)['raw_idx'] for i in range(4)] != [ds.get_details(i)['raw_idx'] for i in range(4)]


@pytest.mark.parametrize('bad', [0, -3, 2.5])
def test_max_size_must_be_positive_integer(tmp_path, bad):
    _make_folder(tmp_path / 'ds')
    with pytest.raises(DatasetError, match='max_size'):
        ImageFolderDataset(str(tmp_path / 'ds'), max_size=bad)


def test_class_labels_become_one_hot(tmp_path):
    _make_folder(tmp_path / 'ds', labels=[0, 3, 1, 3, 2, 0])
    ds = ImageFolderDataset(str(tmp_path / 'ds'), use_labels=True)
    assert ds.has_labels and ds.label_dim == 4 and ds.label_shape == [4]
    assert np.array_equal(ds[1][1], np.eye(4, dtype=np.float32)[3])
    assert np.array_equal(ds.get_label(4), np.eye(4, dtype=np.float32)[2])
    assert ImageFolderDataset(str(tmp_path / 'ds'), use_labels=False).label_dim == 0


def test_vector_labels_are_kept(tmp_path):
    vectors = [[0.5 * i, -1.0] for i in range(6)]
    _make_folder(tmp_path / 'ds', labels=vectors)
    ds = ImageFolderDataset(str(tmp_path / 'ds'), use_labels=True, xflip=True)
    assert ds.label_dim == 2 and np.allclose(ds[9][1], vectors[3])


def test_missing_label_names_the_image(tmp_path):
    fnames, _ = _make_folder(tmp_path / 'ds', labels=[0, 1, 2, 0, 1, 2])
    meta = json.loads((tmp_path / 'ds' / 'dataset.json').read_text())
    meta['labels'] = meta['labels'][:4] + meta['labels'][5:]
    (tmp_path / 'ds' / 'dataset.json').write_text(json.dumps(meta))
    with pytest.raises(DatasetError, match=fnames[4]):
        ImageFolderDataset(str(tmp_path / 'ds'), use_labels=True)


@pytest.mark.parametrize('text, match', [
    ('{"labels": [["a.png", 1]', 'not valid JSON'),
    ('[1, 2]', '"labels" key'),
    ('{"labels": 5}', 'list of'),
    ('{"labels": [["00000/img00000000.png"]]}', r'labels\[0\]'),
    ('{"labels": [["00000/img00000000.png", "cat"]]}', 'class index'),
])
def test_malformed_labels_json_is_reported(tmp_path, text, match):
    _make_folder(tmp_path / 'ds')
    (tmp_path / 'ds' / 'dataset.json').write_text(text)
    with pytest.raises(DatasetError, match='dataset.json') as info:
        ImageFolderDataset(str(tmp_path / 'ds'), use_labels=True)
    assert info.match(match)


def test_null_labels_mean_unconditional(tmp_path):
    _make_folder(tmp_path / 'ds')
    (tmp_path / 'ds' / 'dataset.json').write_text('{"labels": null}')
    assert ImageFolderDataset(str(tmp_path / 'ds'), use_labels=True).label_dim == 0


def test_corrupt_image_is_named(tmp_path):
    fnames, _ = _make_folder(tmp_path / 'ds')
    (tmp_path / 'ds' / fnames[2]).write_bytes(b'this is not a png')
    with pytest.raises(DatasetError, match=fnames[2]):
        ImageFolderDataset(str(tmp_path / 'ds'))


def test_truncated_image_is_named_when_loaded(tmp_path):
    fnames, _ = _make_folder(tmp_path / 'ds', res=32)
    path = tmp_path / 'ds' / fnames[3]
    path.write_bytes(path.read_bytes()[:60])  # header intact, pixel data cut
    ds = ImageFolderDataset(str(tmp_path / 'ds'))
    ds[0]
    with pytest.raises(DatasetError, match=fnames[3]):
        ds[3]


def test_mixed_sizes_name_the_odd_file(tmp_path):
    _make_folder(tmp_path / 'ds')
    _write_png(str(tmp_path / 'ds' / 'zz_big.png'), np.zeros((16, 16, 3), np.uint8))
    with pytest.raises(DatasetError, match='zz_big.png.*16x16'):
        ImageFolderDataset(str(tmp_path / 'ds'))


def test_mixed_channels_name_the_odd_file(tmp_path):
    _make_folder(tmp_path / 'ds')
    _write_png(str(tmp_path / 'ds' / 'zz_grey.png'), np.zeros((8, 8), np.uint8))
    with pytest.raises(DatasetError, match='zz_grey.png'):
        ImageFolderDataset(str(tmp_path / 'ds'))


@pytest.mark.parametrize('shape, match', [((8, 16, 3), 'not square'), ((12, 12, 3), 'power of two')])
def test_unusable_sizes_are_rejected_with_the_fix(tmp_path, shape, match):
    _write_png(str(tmp_path / 'ds' / 'a.png'), np.zeros(shape, np.uint8))
    with pytest.raises(DatasetError, match=match) as info:
        ImageFolderDataset(str(tmp_path / 'ds'))
    assert info.match('a.png') and info.match('dataset_tool.py')


def test_rgba_is_rejected_with_the_fix(tmp_path):
    _write_png(str(tmp_path / 'ds' / 'a.png'), np.zeros((8, 8, 4), np.uint8))
    with pytest.raises(DatasetError, match="a.png.*'RGBA'.*dataset_tool.py"):
        ImageFolderDataset(str(tmp_path / 'ds'))


def test_resolution_mismatch_is_reported(tmp_path):
    _make_folder(tmp_path / 'ds')
    with pytest.raises(DatasetError, match='resolution=16'):
        ImageFolderDataset(str(tmp_path / 'ds'), resolution=16)
    assert ImageFolderDataset(str(tmp_path / 'ds'), resolution=8).resolution == 8


def test_empty_or_missing_paths_are_reported(tmp_path):
    (tmp_path / 'empty').mkdir()
    (tmp_path / 'empty' / 'notes.txt').write_text('no images here')
    with pytest.raises(DatasetError, match='no images found'):
        ImageFolderDataset(str(tmp_path / 'empty'))
    with pytest.raises(DatasetError, match='does not exist'):
        ImageFolderDataset(str(tmp_path / 'nowhere'))
    (tmp_path / 'file.png').write_bytes(b'x')
    with pytest.raises(DatasetError, match='not a folder or a zip'):
        ImageFolderDataset(str(tmp_path / 'file.png'))


def test_macos_debris_and_hidden_files_are_ignored(tmp_path):
    _make_folder(tmp_path / 'ds', n=3)
    _zip_folder(tmp_path / 'ds', tmp_path / 'ds.zip')
    with zipfile.ZipFile(tmp_path / 'ds.zip', 'a') as zf:
        zf.writestr('__MACOSX/00000/._img00000000.png', b'resource fork')
        zf.writestr('00000/._img00000001.png', b'resource fork')
    assert len(ImageFolderDataset(str(tmp_path / 'ds.zip'))) == 3


def test_zip_dataset_survives_pickling_for_loader_workers(tmp_path):
    _fnames, images = _make_folder(tmp_path / 'ds')
    _zip_folder(tmp_path / 'ds', tmp_path / 'ds.zip')
    ds = ImageFolderDataset(str(tmp_path / 'ds.zip'))
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
    assert len(ds) == 1797 and ds.image_shape == [3, 32, 32] and ds.name == 'digits32'
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
    with pytest.raises(DatasetError, match='power of two'):
        DigitsDataset(resolution=24)


def test_open_dataset_dispatches_on_path(tmp_path):
    _make_folder(tmp_path / 'ds')
    assert isinstance(open_dataset(str(tmp_path / 'ds'), xflip=True), ImageFolderDataset)
    assert isinstance(open_dataset(None, max_size=10), DigitsDataset)
    assert len(open_dataset('sklearn:digits', max_size=10)) == 10
    official = dict(class_name='training.dataset.ImageFolderDataset', path=str(tmp_path / 'ds'), use_labels=False,
                    max_size=6, xflip=False, resolution=8)
    assert len(open_dataset(**official)) == 6
