"""Image data the experiments and the GAN share, read without anything of the GAN code: the embedded digits and
the CIFAR-10 python archive.

The CIFAR-10 batches are pickles; they are read with an unpickler that can only rebuild numpy arrays, so a
tampered archive cannot run code. training/ builds its datasets on these readers (the dependency goes that way).
"""
from __future__ import annotations

import io
import os
import pickle
import tarfile
from typing import Any, Sequence

import numpy as np
import PIL.Image

DIGITS_NATIVE_RESOLUTION = 8
DIGITS_MAX_VALUE = 16  # sklearn's digits count ink pixels in 4x4 blocks of a 32x32 bitmap: 0..16
CIFAR10_TRAIN_BATCHES = [f'data_batch_{i}' for i in range(1, 6)]  # 50,000 training images; test_batch is left out
CIFAR10_TEST_BATCH = 'test_batch'
CIFAR10_RESOLUTION = 32


class DataFileError(ValueError):
    """A data file that cannot be read; the message names the file and what is wrong with it."""


def load_digits_images(resolution: int = 32, num_channels: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 images [1797, C, R, R], int64 class labels [1797]) from scikit-learn's digits.

    Upsampling is PIL bicubic (`Image.BICUBIC`) from 8x8; resolution 8 returns the data unresampled.
    """
    if resolution < 4 or resolution & (resolution - 1):
        raise DataFileError(f'embedded digits: resolution must be a power of two >= 4, got {resolution}')
    if num_channels not in (1, 3):
        raise DataFileError(f'embedded digits: num_channels must be 1 or 3, got {num_channels}')
    # Deferred: importing sklearn.datasets takes 1.1-1.7 s after torch (measured, 3 runs); the CIFAR-10 and zip
    # readers that training/ builds on do not need it.
    from sklearn.datasets import load_digits
    digits = load_digits()
    native = np.rint(digits.images * (255 / DIGITS_MAX_VALUE)).clip(0, 255).astype(np.uint8)
    if resolution == DIGITS_NATIVE_RESOLUTION:
        grey = native
    else:
        grey = np.stack([np.asarray(PIL.Image.fromarray(img, 'L').resize((resolution, resolution), PIL.Image.BICUBIC))
                         for img in native])
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
        raise DataFileError(f'{source}: not a CIFAR-10 python batch ({err})') from None


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
                raise DataFileError(f'{path}: missing CIFAR-10 batch {batch}')
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
            raise DataFileError(f'{path}: cannot read tar archive ({err})') from None
        missing = [b for b in names if b not in batches]
        if missing:
            raise DataFileError(f'{path}: not the CIFAR-10 python archive (cifar-10-python.tar.gz): '
                               f'no {", ".join(missing)} inside')
    images, labels = [], []
    for batch in names:
        source, data = batches[batch]
        content = load_numpy_pickle(data, source)
        if not isinstance(content, dict):
            raise DataFileError(f'{source}: expected a dict with "data" and "labels", got {type(content).__name__}')
        content = {k.decode('latin1') if isinstance(k, bytes) else k: v for k, v in content.items()}
        pixels, batch_labels = content.get('data'), content.get('labels')
        if not isinstance(pixels, np.ndarray) or pixels.dtype != np.uint8 or pixels.ndim != 2 \
                or pixels.shape[1] != 3 * CIFAR10_RESOLUTION ** 2:
            raise DataFileError(f'{source}: "data" must be a uint8 array [N, 3072], got '
                               f'{getattr(pixels, "dtype", type(pixels).__name__)} {getattr(pixels, "shape", "")}')
        batch_labels = np.asarray(batch_labels)
        if batch_labels.shape != (pixels.shape[0],) or not np.issubdtype(batch_labels.dtype, np.integer) \
                or batch_labels.min(initial=0) < 0 or batch_labels.max(initial=0) > 9:
            raise DataFileError(f'{source}: "labels" must be {pixels.shape[0]} class indices 0..9')
        # rows hold the red plane, then green, then blue, each 32x32 row-major
        images.append(pixels.reshape(-1, 3, CIFAR10_RESOLUTION, CIFAR10_RESOLUTION).transpose(0, 2, 3, 1))
        labels.append(batch_labels.astype(np.int64))
    return np.concatenate(images), np.concatenate(labels)
