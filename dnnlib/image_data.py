"""Image data the experiments and the GAN share, read without anything of the GAN code: the embedded digits and
the CIFAR-10 and CIFAR-100 python archives, and the Tiny-ImageNet and Food-101 folders.

The CIFAR-10 batches are pickles; they are read with an unpickler that can only rebuild numpy arrays, so a
tampered archive cannot run code. training/ builds its datasets on these readers (the dependency goes that way).
"""

from __future__ import annotations

import dataclasses
import io
import os
import pickle
import tarfile
from collections.abc import Sequence
from typing import Any

import numpy as np
import PIL.Image

DIGITS_NATIVE_RESOLUTION = 8
DIGITS_MAX_VALUE = 16  # sklearn's digits count ink pixels in 4x4 blocks of a 32x32 bitmap: 0..16
CIFAR10_TRAIN_BATCHES = [f"data_batch_{i}" for i in range(1, 6)]  # 50,000 training images; test_batch is left out
CIFAR10_TEST_BATCH = "test_batch"
CIFAR10_RESOLUTION = 32


class DataFileError(ValueError):
    """A data file that cannot be read; the message names the file and what is wrong with it."""


def load_digits_images(resolution: int = 32, num_channels: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 images [1797, C, R, R], int64 class labels [1797]) from scikit-learn's digits.

    Upsampling is PIL bicubic (`Image.BICUBIC`) from 8x8; resolution 8 returns the data unresampled.
    """
    if resolution < 4 or resolution & (resolution - 1):
        raise DataFileError(f"embedded digits: resolution must be a power of two >= 4, got {resolution}")
    if num_channels not in (1, 3):
        raise DataFileError(f"embedded digits: num_channels must be 1 or 3, got {num_channels}")
    # Deferred: importing sklearn.datasets takes 1.1-1.7 s after torch (measured, 3 runs); the CIFAR-10 and zip
    # readers that training/ builds on do not need it.
    from sklearn.datasets import load_digits

    digits = load_digits()
    native = np.rint(digits.images * (255 / DIGITS_MAX_VALUE)).clip(0, 255).astype(np.uint8)
    if resolution == DIGITS_NATIVE_RESOLUTION:
        grey = native
    else:
        grey = np.stack(
            [
                np.asarray(PIL.Image.fromarray(img, "L").resize((resolution, resolution), PIL.Image.BICUBIC))
                for img in native
            ]
        )
    images = np.repeat(grey[:, np.newaxis], num_channels, axis=1)
    return np.ascontiguousarray(images), digits.target.astype(np.int64)


class NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickler for data files: rebuilds dicts, lists, strings, numbers and numpy arrays, and nothing else.

    find_class is the only way a pickle reaches code, so allowing just the array-reconstruction helpers (and
    `_codecs.encode`, which protocol-2 pickles use for bytes) means loading cannot execute anything else.
    """

    def find_class(self, module: str, name: str):
        if (module, name) in _ALLOWED_GLOBALS:
            return _ALLOWED_GLOBALS[(module, name)]
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}: only numpy arrays are allowed in this file")


def _codecs_encode(text: str, encoding: str = "utf-8") -> bytes:
    if encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError(f"unexpected encoding {encoding!r} in pickle")
    return text.encode("latin1")


_reconstruct = np.ndarray.__reduce__(np.zeros(0))[0]  # numpy's array rebuild helper, whatever its module path
_scalar = np.float64(0).__reduce__()[0]
_frombuffer = np.zeros(1).__reduce_ex__(5)[0]  # protocol >= 5 rebuilds arrays from a raw buffer
_ALLOWED_GLOBALS = {
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,  # numpy < 2 (and the real CIFAR-10 files)
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,  # numpy >= 2
    ("numpy.core.multiarray", "scalar"): _scalar,
    ("numpy._core.multiarray", "scalar"): _scalar,
    ("numpy.core.numeric", "_frombuffer"): _frombuffer,
    ("numpy._core.numeric", "_frombuffer"): _frombuffer,
    ("_codecs", "encode"): _codecs_encode,
}


def load_numpy_pickle(data: bytes, source: str) -> Any:
    """Unpickle bytes that hold only containers and numpy arrays (Python 2 pickles are read as latin1)."""
    try:
        return NumpyOnlyUnpickler(io.BytesIO(data), encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, KeyError) as err:
        raise DataFileError(f"{source}: not a CIFAR-10 python batch ({err})") from None


def read_cifar10(path: str, batches: Sequence[str] = tuple(CIFAR10_TRAIN_BATCHES)) -> tuple[np.ndarray, np.ndarray]:
    """CIFAR-10 images (uint8 [N, 32, 32, 3]) and labels 0..9 of the named batches, in that order.

    The default is the 50,000 training images; ``batches=('test_batch',)`` gives the 10,000 test images.
    """
    names = list(batches)
    batches = {}
    if os.path.isdir(path):
        for batch in names:
            file = os.path.join(path, batch)
            if not os.path.isfile(file):
                raise DataFileError(f"{path}: missing CIFAR-10 batch {batch}")
            with open(file, "rb") as f:
                batches[batch] = (file, f.read())
    else:
        try:
            with tarfile.open(path, "r:*") as tar:
                for member in tar.getmembers():
                    base = os.path.basename(member.name)
                    if member.isfile() and base in names:
                        batches[base] = (f"{path}:{member.name}", tar.extractfile(member).read())
        except (tarfile.TarError, OSError, EOFError) as err:
            raise DataFileError(f"{path}: cannot read tar archive ({err})") from None
        missing = [b for b in names if b not in batches]
        if missing:
            raise DataFileError(
                f"{path}: not the CIFAR-10 python archive (cifar-10-python.tar.gz): no {', '.join(missing)} inside"
            )
    images, labels = [], []
    for batch in names:
        source, data = batches[batch]
        batch_images, batch_labels = _decode_cifar_batch(data, source, "labels", 10)
        images.append(batch_images)
        labels.append(batch_labels)
    return np.concatenate(images), np.concatenate(labels)


def _decode_cifar_batch(data: bytes, source: str, label_key: str, classes: int) -> tuple[np.ndarray, np.ndarray]:
    """One pickled batch of the CIFAR python archives (CIFAR-10's data_batch_*, CIFAR-100's train/test), checked:
    uint8 [N, 32, 32, 3] images and int64 labels 0..classes-1 under `label_key`."""
    content = load_numpy_pickle(data, source)
    if not isinstance(content, dict):
        raise DataFileError(f'{source}: expected a dict with "data" and "{label_key}", got {type(content).__name__}')
    content = {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in content.items()}
    pixels, labels = content.get("data"), content.get(label_key)
    if (
        not isinstance(pixels, np.ndarray)
        or pixels.dtype != np.uint8
        or pixels.ndim != 2
        or pixels.shape[1] != 3 * CIFAR10_RESOLUTION**2
    ):
        raise DataFileError(
            f'{source}: "data" must be a uint8 array [N, 3072], got '
            f"{getattr(pixels, 'dtype', type(pixels).__name__)} {getattr(pixels, 'shape', '')}"
        )
    labels = np.asarray(labels)
    if (
        labels.shape != (pixels.shape[0],)
        or not np.issubdtype(labels.dtype, np.integer)
        or labels.min(initial=0) < 0
        or labels.max(initial=0) >= classes
    ):
        raise DataFileError(f'{source}: "{label_key}" must be {pixels.shape[0]} class indices 0..{classes - 1}')
    # rows hold the red plane, then green, then blue, each 32x32 row-major
    images = pixels.reshape(-1, 3, CIFAR10_RESOLUTION, CIFAR10_RESOLUTION).transpose(0, 2, 3, 1)
    return images, labels.astype(np.int64)


# ---------------------------------------------------------------------------------------------------- CIFAR-100

CIFAR100_SPLITS = ("train", "test")  # cifar-100-python/train (50,000 images) and cifar-100-python/test (10,000)
CIFAR100_CLASSES = 100


def read_cifar100(path: str, split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """CIFAR-100 images (uint8 [N, 32, 32, 3]) and fine labels 0..99 of one split, 'train' or 'test'.

    ``path`` is ``cifar-100-python.tar.gz`` as downloaded or its extracted ``cifar-100-python`` folder; each split
    is one pickle of {b'data': uint8 [N, 3072] planar RGB, b'fine_labels': list, b'coarse_labels': list, ...}.
    """
    if split not in CIFAR100_SPLITS:
        raise ValueError(f"CIFAR-100 split must be one of {CIFAR100_SPLITS}, got {split!r}")
    if os.path.isdir(path):
        file = os.path.join(path, split)
        if not os.path.isfile(file):
            raise DataFileError(
                f"{path}: missing CIFAR-100 file {split!r} (the extracted cifar-100-python folder "
                f"holds train, test and meta)"
            )
        with open(file, "rb") as f:
            source, data = file, f.read()
    else:
        try:
            with tarfile.open(path, "r:*") as tar:
                member = next(
                    (
                        m
                        for m in tar.getmembers()
                        if m.isfile()
                        and os.path.basename(m.name) == split
                        and os.path.basename(os.path.dirname(m.name)) == "cifar-100-python"
                    ),
                    None,
                )
                if member is None:
                    raise DataFileError(
                        f"{path}: not the CIFAR-100 python archive (cifar-100-python.tar.gz): no "
                        f"cifar-100-python/{split} inside"
                    )
                source, data = f"{path}:{member.name}", tar.extractfile(member).read()
        except (tarfile.TarError, OSError, EOFError) as err:
            raise DataFileError(f"{path}: cannot read tar archive ({err})") from None
    images, labels = _decode_cifar_batch(data, source, "fine_labels", CIFAR100_CLASSES)
    return np.ascontiguousarray(images), labels


# ---------------------------------------------------------------------------------------------------- image folders


@dataclasses.dataclass(frozen=True)
class ImageList:
    """One split of an image-folder dataset: file paths, their class indices, and the class names (index order)."""

    files: tuple
    labels: np.ndarray  # int64 [N]
    classes: tuple


def _read_lines(file: str, what: str) -> list:
    if not os.path.isfile(file):
        raise DataFileError(f"missing {what}: {file}")
    with open(file, encoding="utf-8") as f:
        return [line.strip() for line in f if line.strip()]


def list_tiny_imagenet(root: str, split: str = "train") -> ImageList:
    """Tiny-ImageNet's ``tiny-imagenet-200/`` folder as distributed: ``wnids.txt`` (200 class ids, in index order),
    ``train/<wnid>/images/*.JPEG`` and ``val/images/*.JPEG`` labelled by ``val/val_annotations.txt`` (tab-separated
    file name, wnid, box). 'val' is the labelled held-out split (the official test split has no labels)."""
    if split not in ("train", "val"):
        raise ValueError(f"Tiny-ImageNet split must be 'train' or 'val', got {split!r}")
    classes = tuple(_read_lines(os.path.join(root, "wnids.txt"), "Tiny-ImageNet class list"))
    index = {wnid: i for i, wnid in enumerate(classes)}
    files, labels = [], []
    if split == "train":
        for wnid in classes:
            folder = os.path.join(root, "train", wnid, "images")
            if not os.path.isdir(folder):
                raise DataFileError(f"{root}: missing Tiny-ImageNet training folder train/{wnid}/images")
            names = sorted(n for n in os.listdir(folder) if n.lower().endswith((".jpeg", ".jpg", ".png")))
            files += [os.path.join(folder, n) for n in names]
            labels += [index[wnid]] * len(names)
    else:
        for line in _read_lines(os.path.join(root, "val", "val_annotations.txt"), "Tiny-ImageNet val labels"):
            name, wnid = line.split("\t")[:2]
            if wnid not in index:
                raise DataFileError(f"{root}/val/val_annotations.txt: class {wnid!r} of {name} is not in wnids.txt")
            files.append(os.path.join(root, "val", "images", name))
            labels.append(index[wnid])
    if not files:
        raise DataFileError(f"{root}: no Tiny-ImageNet {split} images found")
    return ImageList(tuple(files), np.asarray(labels, dtype=np.int64), classes)


def list_food101(root: str, split: str = "train") -> ImageList:
    """Food-101's ``food-101/`` folder as distributed: ``meta/classes.txt`` (101 names, in index order),
    ``meta/train.txt`` / ``meta/test.txt`` (lines ``<class>/<id>``) and ``images/<class>/<id>.jpg``."""
    if split not in ("train", "test"):
        raise ValueError(f"Food-101 split must be 'train' or 'test', got {split!r}")
    classes = tuple(_read_lines(os.path.join(root, "meta", "classes.txt"), "Food-101 class list"))
    index = {name: i for i, name in enumerate(classes)}
    files, labels = [], []
    for line in _read_lines(os.path.join(root, "meta", f"{split}.txt"), f"Food-101 {split} list"):
        name = line.split("/")[0]
        if name not in index:
            raise DataFileError(f"{root}/meta/{split}.txt: class {name!r} of {line} is not in meta/classes.txt")
        files.append(os.path.join(root, "images", line + ".jpg"))
        labels.append(index[name])
    return ImageList(tuple(files), np.asarray(labels, dtype=np.int64), classes)


def load_rgb(path: str) -> PIL.Image.Image:
    """One image file as an RGB PIL image (grey and palette files converted); a bad file raises DataFileError."""
    try:
        with PIL.Image.open(path) as image:
            return image.convert("RGB")
    except (OSError, ValueError) as err:
        raise DataFileError(f"{path}: cannot read image ({err})") from None
