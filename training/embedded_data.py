"""The embedded default dataset: scikit-learn's handwritten digits, so `train.py` runs with no data on disk.

scikit-learn ships the 1,797 8x8 UCI digits (values 0..16, 10 classes) inside the package. We scale them to
0..255 (ink bright on black, like MNIST), upsample with PIL's bicubic filter to the requested power-of-two
resolution (32x32 by default) and, by default, repeat the grey channel three times: 3-channel images go
straight into Inception for FID, and the same network configs work for this and for RGB datasets.
"""
from __future__ import annotations

import numpy as np
import PIL.Image

from training.dataset import Dataset, DatasetError, select_subset

DIGITS_NATIVE_RESOLUTION = 8
DIGITS_MAX_VALUE = 16  # sklearn's digits count ink pixels in 4x4 blocks of a 32x32 bitmap: 0..16


def load_digits_images(resolution: int = 32, num_channels: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 images [1797, C, R, R], int64 class labels [1797]) from scikit-learn's digits.

    Upsampling is PIL bicubic (`Image.BICUBIC`) from 8x8; resolution 8 returns the data unresampled.
    """
    if resolution < 4 or resolution & (resolution - 1):
        raise DatasetError(f'embedded digits: resolution must be a power of two >= 4, got {resolution}')
    if num_channels not in (1, 3):
        raise DatasetError(f'embedded digits: num_channels must be 1 or 3, got {num_channels}')
    from sklearn.datasets import load_digits  # deferred: scikit-learn is slow to import
    digits = load_digits()
    native = np.rint(digits.images * (255 / DIGITS_MAX_VALUE)).clip(0, 255).astype(np.uint8)
    if resolution == DIGITS_NATIVE_RESOLUTION:
        grey = native
    else:
        grey = np.stack([np.asarray(PIL.Image.fromarray(img, 'L').resize((resolution, resolution), PIL.Image.BICUBIC))
                         for img in native])
    images = np.repeat(grey[:, np.newaxis], num_channels, axis=1)
    return np.ascontiguousarray(images), digits.target.astype(np.int64)


class DigitsDataset(Dataset):
    """scikit-learn digits as a training set with the ImageFolderDataset interface (10 one-hot labels)."""

    def __init__(self, resolution: int | None = None, use_labels: bool = False, max_size: int | None = None,
                 xflip: bool = False, random_seed: int = 0, num_channels: int = 3):
        resolution = 32 if resolution is None else int(resolution)
        self._images, labels = load_digits_images(resolution, num_channels)
        raw_idx = select_subset(len(self._images), max_size, random_seed)
        super().__init__(name=f'digits{resolution}', raw_shape=list(self._images.shape), raw_idx=raw_idx,
                         use_labels=use_labels, xflip=xflip, raw_labels=labels)

    def _load_raw_image(self, raw_idx: int) -> np.ndarray:
        return self._images[raw_idx]
