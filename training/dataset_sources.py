"""Readers for dataset_tool.py's --source: image folders and zips, the CIFAR-10 python archive, sklearn digits.

Every source is a sequence of images with optional labels and a name per image for messages. The CIFAR-10
batches are pickles; they are read with an unpickler that can only rebuild numpy arrays, so a tampered
archive cannot run code.
"""
from __future__ import annotations

import io
import os
import pickle
import re
import tarfile
import zipfile
from typing import Any, Sequence

import numpy as np
import PIL.Image

from training.dataset import DatasetError, labels_to_array, parse_labels_json

SKLEARN_DIGITS = 'sklearn:digits'
CIFAR10_TRAIN_BATCHES = [f'data_batch_{i}' for i in range(1, 6)]  # 50,000 training images; test_batch is left out
CIFAR10_RESOLUTION = 32


class ImageSource:
    """Random access to source images: len, a name for messages, the header (mode, size), the image, its label."""

    labels: list[Any] | None = None

    def __len__(self) -> int:
        raise NotImplementedError

    def name(self, idx: int) -> str:
        raise NotImplementedError

    def header(self, idx: int) -> tuple[str, tuple[int, int], bool]:
        """(PIL mode, (width, height), has a transparency key) without decoding the pixels."""
        with self.open(idx) as image:
            return image.mode, image.size, 'transparency' in image.info

    def open(self, idx: int) -> PIL.Image.Image:
        raise NotImplementedError

    def close(self) -> None:
        pass


class FileImageSource(ImageSource):
    """Every image file under a folder (recursively) or in a zip, sorted by path, plus dataset.json labels."""

    def __init__(self, path: str):
        self.path = path
        self._zip = None
        if os.path.isdir(path):
            names = sorted(os.path.relpath(os.path.join(root, f), path).replace('\\', '/')
                           for root, _dirs, files in os.walk(path, followlinks=True) for f in files)
        elif zipfile.is_zipfile(path):
            self._zip = zipfile.ZipFile(path)
            names = sorted(info.filename for info in self._zip.infolist() if not info.is_dir())
        else:
            raise DatasetError(f'--source {path}: not a folder, zip, CIFAR-10 archive or {SKLEARN_DIGITS}')
        PIL.Image.init()
        known = set(PIL.Image.EXTENSION)
        self.fnames = [n for n in names if os.path.splitext(n)[1].lower() in known
                       and not any(p.startswith('.') or p == '__MACOSX' for p in n.split('/'))]
        if not self.fnames:
            raise DatasetError(f'--source {path}: no image files found (searched recursively)')
        if 'dataset.json' in names:
            source = f'{path}/dataset.json'
            by_fname = parse_labels_json(self._read('dataset.json').decode('utf-8'), source)
            if by_fname:
                missing = [n for n in self.fnames if n not in by_fname]
                if missing:
                    raise DatasetError(f'{source}: no label for image {missing[0]!r}'
                                       + (f' (and {len(missing) - 1} more)' if len(missing) > 1 else ''))
                labels_to_array([by_fname[n] for n in self.fnames], self.fnames, source)  # checks consistency
                self.labels = [by_fname[n] for n in self.fnames]

    def _read(self, fname: str) -> bytes:
        if self._zip is not None:
            return self._zip.read(fname)
        with open(os.path.join(self.path, fname), 'rb') as file:
            return file.read()

    def __len__(self) -> int:
        return len(self.fnames)

    def name(self, idx: int) -> str:
        return f'{self.path}/{self.fnames[idx]}'

    def open(self, idx: int) -> PIL.Image.Image:
        try:
            image = PIL.Image.open(io.BytesIO(self._read(self.fnames[idx])))
        except (OSError, SyntaxError, ValueError) as err:
            raise DatasetError(f'{self.name(idx)}: cannot read image ({err})') from None
        return image

    def close(self) -> None:
        if self._zip is not None:
            self._zip.close()
            self._zip = None


class ArrayImageSource(ImageSource):
    """In-memory uint8 images [N, H, W, C] (C = 1 or 3) with int labels."""

    def __init__(self, prefix: str, images: np.ndarray, labels: np.ndarray | None):
        self.prefix = prefix
        self.images = images
        self.labels = None if labels is None else [int(label) for label in labels]

    def __len__(self) -> int:
        return len(self.images)

    def name(self, idx: int) -> str:
        return f'{self.prefix}[{idx}]'

    def header(self, idx: int) -> tuple[str, tuple[int, int], bool]:
        height, width, channels = self.images.shape[1:]
        return ('L' if channels == 1 else 'RGB'), (width, height), False

    def open(self, idx: int) -> PIL.Image.Image:
        image = self.images[idx]
        return PIL.Image.fromarray(image[:, :, 0], 'L') if image.shape[2] == 1 else PIL.Image.fromarray(image, 'RGB')


class NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickler for data files: rebuilds dicts, lists, strings, numbers and numpy arrays, and nothing else.

    find_class is the only way a pickle reaches code, so allowing just the array-reconstruction helpers (and
    `_codecs.encode`, which protocol-2 pickles use for bytes) means loading cannot execute anything else.
    """

    def find_class(self, module: str, name: str):
        if (module, name) in _ALLOWED_GLOBALS:
            return _ALLOWED_GLOBALS[(module, name)]
        raise pickle.UnpicklingError(f'refusing to load {module}.{name}: only numpy arrays are allowed in this file')


def _codecs_encode(text: str, encoding: str = 'utf-8') -> bytes:
    if encoding not in ('latin1', 'latin-1'):
        raise pickle.UnpicklingError(f'unexpected encoding {encoding!r} in pickle')
    return text.encode('latin1')


_reconstruct = np.ndarray.__reduce__(np.zeros(0))[0]  # numpy's array rebuild helper, whatever its module path
_scalar = np.float64(0).__reduce__()[0]
_frombuffer = np.zeros(1).__reduce_ex__(5)[0]  # protocol >= 5 rebuilds arrays from a raw buffer
_ALLOWED_GLOBALS = {
    ('numpy', 'ndarray'): np.ndarray,
    ('numpy', 'dtype'): np.dtype,
    ('numpy.core.multiarray', '_reconstruct'): _reconstruct,  # numpy < 2 (and the real CIFAR-10 files)
    ('numpy._core.multiarray', '_reconstruct'): _reconstruct,  # numpy >= 2
    ('numpy.core.multiarray', 'scalar'): _scalar,
    ('numpy._core.multiarray', 'scalar'): _scalar,
    ('numpy.core.numeric', '_frombuffer'): _frombuffer,
    ('numpy._core.numeric', '_frombuffer'): _frombuffer,
    ('_codecs', 'encode'): _codecs_encode,
}


def load_numpy_pickle(data: bytes, source: str) -> Any:
    """Unpickle bytes that hold only containers and numpy arrays (Python 2 pickles are read as latin1)."""
    try:
        return NumpyOnlyUnpickler(io.BytesIO(data), encoding='latin1').load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, KeyError) as err:
        raise DatasetError(f'{source}: not a CIFAR-10 python batch ({err})') from None


def is_cifar10_source(path: str) -> bool:
    """A .tar/.tar.gz holding cifar-10-batches-py/data_batch_*, or a folder holding data_batch_1."""
    if os.path.isdir(path):
        return os.path.isfile(os.path.join(path, CIFAR10_TRAIN_BATCHES[0]))
    return os.path.isfile(path) and re.search(r'\.(tar|tar\.gz|tgz)$', path) is not None


def load_cifar10(path: str, batches: Sequence[str] = tuple(CIFAR10_TRAIN_BATCHES)) -> ArrayImageSource:
    """CIFAR-10 images (uint8 [N, 32, 32, 3]) and labels 0..9 of the named batches, in that order.

    The default is the 50,000 training images; ``batches=('test_batch',)`` gives the 10,000 test images.
    """
    names = list(batches)
    batches = {}
    if os.path.isdir(path):
        for batch in names:
            file = os.path.join(path, batch)
            if not os.path.isfile(file):
                raise DatasetError(f'{path}: missing CIFAR-10 batch {batch}')
            with open(file, 'rb') as f:
                batches[batch] = (file, f.read())
    else:
        try:
            with tarfile.open(path, 'r:*') as tar:
                for member in tar.getmembers():
                    base = os.path.basename(member.name)
                    if member.isfile() and base in names:
                        batches[base] = (f'{path}:{member.name}', tar.extractfile(member).read())
        except (tarfile.TarError, OSError, EOFError) as err:
            raise DatasetError(f'{path}: cannot read tar archive ({err})') from None
        missing = [b for b in names if b not in batches]
        if missing:
            raise DatasetError(f'{path}: not the CIFAR-10 python archive (cifar-10-python.tar.gz): '
                               f'no {", ".join(missing)} inside')
    images, labels = [], []
    for batch in names:
        source, data = batches[batch]
        content = load_numpy_pickle(data, source)
        if not isinstance(content, dict):
            raise DatasetError(f'{source}: expected a dict with "data" and "labels", got {type(content).__name__}')
        content = {k.decode('latin1') if isinstance(k, bytes) else k: v for k, v in content.items()}
        pixels, batch_labels = content.get('data'), content.get('labels')
        if not isinstance(pixels, np.ndarray) or pixels.dtype != np.uint8 or pixels.ndim != 2 \
                or pixels.shape[1] != 3 * CIFAR10_RESOLUTION ** 2:
            raise DatasetError(f'{source}: "data" must be a uint8 array [N, 3072], got '
                               f'{getattr(pixels, "dtype", type(pixels).__name__)} {getattr(pixels, "shape", "")}')
        batch_labels = np.asarray(batch_labels)
        if batch_labels.shape != (pixels.shape[0],) or not np.issubdtype(batch_labels.dtype, np.integer) \
                or batch_labels.min(initial=0) < 0 or batch_labels.max(initial=0) > 9:
            raise DatasetError(f'{source}: "labels" must be {pixels.shape[0]} class indices 0..9')
        # rows hold the red plane, then green, then blue, each 32x32 row-major
        images.append(pixels.reshape(-1, 3, CIFAR10_RESOLUTION, CIFAR10_RESOLUTION).transpose(0, 2, 3, 1))
        labels.append(batch_labels.astype(np.int64))
    return ArrayImageSource('cifar10', np.concatenate(images), np.concatenate(labels))


def load_sklearn_digits() -> ArrayImageSource:
    """The embedded default dataset (32x32, 3-channel grey) so a materialised zip equals DigitsDataset."""
    from training.embedded_data import load_digits_images
    images, labels = load_digits_images(resolution=32, num_channels=3)
    return ArrayImageSource('sklearn-digits', images.transpose(0, 2, 3, 1), labels)


def open_source(source: str) -> ImageSource:
    """The ImageSource for a --source value; raises DatasetError naming the path when it is unusable."""
    if source == SKLEARN_DIGITS:
        return load_sklearn_digits()
    if not os.path.exists(source):
        raise DatasetError(f'--source {source}: no such file or folder')
    if is_cifar10_source(source):
        return load_cifar10(source)
    return FileImageSource(source)
