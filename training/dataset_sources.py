"""Readers for dataset_tool.py's --source: image folders and zips, the CIFAR-10 python archive, sklearn digits.

Every source is a sequence of images with optional labels and a name per image for messages. The CIFAR-10
batches and the digits are read by dnnlib.image_data (shared with the classifier experiments).
"""

from __future__ import annotations

import io
import os
import re
import zipfile
from collections.abc import Sequence
from typing import Any

import numpy as np
import PIL.Image

from dnnlib import image_data
from dnnlib.image_data import CIFAR10_TRAIN_BATCHES
from training.dataset import (
    IMAGE_READ_ERRORS,
    MAX_LABEL_DIM,
    DatasetError,
    describe_image_error,
    labels_to_array,
    parse_labels_json,
)

SKLEARN_DIGITS = "sklearn:digits"
LABEL_SOURCES = ("json", "folders", "none")  # dataset_tool.py --labels: dataset.json, class sub-folders, no labels


MAX_IMAGE_FILE_BYTES = 512 * 2**20  # one image file: an 8K x 8K 16-bit RGB TIFF is ~400 MB


class ImageSource:
    """Random access to source images: len, a name for messages, the header (mode, size), the image, its label.

    `class_names[i]` names class index i when the labels come from folder names; `skipped` lists the files of
    the source that are not images (and not dataset.json), for a note.
    """

    labels: list[Any] | None = None
    class_names: list[str] | None = None
    skipped: Sequence[str] = ()

    def __len__(self) -> int:
        raise NotImplementedError

    def name(self, idx: int) -> str:
        raise NotImplementedError

    def header(self, idx: int) -> tuple[str, tuple[int, int], bool]:
        """(PIL mode, (width, height), has a transparency key) without decoding the pixels."""
        with self.open(idx) as image:
            return image.mode, image.size, "transparency" in image.info

    def open(self, idx: int) -> PIL.Image.Image:
        raise NotImplementedError

    def close(self) -> None:
        pass


def _is_hidden(fname: str) -> bool:
    """macOS zip debris ('__MACOSX/', '._x.png') and other hidden files, which are ignored without a note."""
    return any(part.startswith(".") or part == "__MACOSX" for part in fname.split("/"))


def folder_classes(fnames: Sequence[str], where: str) -> tuple[list[str], list[int]]:
    """(class names, class index per file) from sub-folder names: sorted names -> 0, 1, 2, ... (as torchvision's
    ImageFolder). Folders that hold every file (a zip wrapping all in one folder) are skipped first; the class is
    the next folder, so images further down (s1/a/1.png) belong to it. Raises naming files outside any class folder.
    """
    dirs = [fname.split("/")[:-1] for fname in fnames]
    common = 0
    while all(len(d) > common for d in dirs) and len({d[common] for d in dirs}) == 1:
        common += 1
    loose = [fname for fname, d in zip(fnames, dirs) if len(d) == common]
    if loose and len(loose) == len(fnames):
        inside = f" are all in {'/'.join(dirs[0][:common])}/" if common else " are all at the top level"
        raise DatasetError(
            f"{where}: --labels=folders: the images{inside}; put them in one sub-folder per class (e.g. s1/, s2/, ...)"
        )
    if loose:
        raise DatasetError(
            f"{where}: --labels=folders: {len(loose)} image(s) are not in a class sub-folder, e.g. "
            f"{loose[0]}; move them into the folder of their class or remove them"
        )
    names = sorted({d[common] for d in dirs})
    if len(names) > MAX_LABEL_DIM:
        raise DatasetError(
            f"{where}: --labels=folders: {len(names)} class folders, more than the {MAX_LABEL_DIM} "
            "classes a dataset may have"
        )
    index = {name: i for i, name in enumerate(names)}
    return names, [index[d[common]] for d in dirs]


class FileImageSource(ImageSource):
    """Every image file under a folder (recursively) or in a zip, sorted by path, plus labels.

    labels: 'json' takes them from the source's dataset.json when there is one, 'folders' from sub-folder names
    (folder_classes), 'none' drops them.
    """

    def __init__(self, path: str, labels: str = "json"):
        if labels not in LABEL_SOURCES:
            raise DatasetError(f"--labels={labels}: expected one of {', '.join(LABEL_SOURCES)}")
        self.path = path
        self._zip = None
        if os.path.isdir(path):
            names = sorted(
                os.path.relpath(os.path.join(root, f), path).replace("\\", "/")
                for root, _dirs, files in os.walk(path, followlinks=True)
                for f in files
            )
        elif zipfile.is_zipfile(path):
            try:
                self._zip = zipfile.ZipFile(path)
            except (zipfile.BadZipFile, OSError) as err:
                raise DatasetError(f"--source {path}: damaged zip archive ({err})") from None
            names = sorted(info.filename for info in self._zip.infolist() if not info.is_dir())
        else:
            raise DatasetError(f"--source {path}: not a folder, zip, CIFAR-10 archive or {SKLEARN_DIGITS}")
        PIL.Image.init()
        known = set(PIL.Image.EXTENSION)
        visible = [n for n in names if not _is_hidden(n)]
        self.fnames = [n for n in visible if os.path.splitext(n)[1].lower() in known]
        self.skipped = [n for n in visible if os.path.splitext(n)[1].lower() not in known and n != "dataset.json"]
        if not self.fnames:
            found = f"; found only {len(self.skipped)} other file(s), e.g. {self.skipped[0]}" if self.skipped else ""
            raise DatasetError(f"--source {path}: no image files found (searched recursively){found}")
        self.has_json_labels = False
        if labels == "folders":
            self.class_names, self.labels = folder_classes(self.fnames, f"--source {path}")
        if "dataset.json" in names:
            source = self.name_of("dataset.json")
            try:
                by_fname = parse_labels_json(self._read("dataset.json").decode("utf-8"), source)
            except (UnicodeDecodeError, OSError, zipfile.BadZipFile) as err:
                raise DatasetError(f"{source}: cannot read ({err})") from None
            self.has_json_labels = bool(by_fname)
            if by_fname and labels == "json":
                missing = [n for n in self.fnames if n not in by_fname]
                if missing:
                    raise DatasetError(
                        f"{source}: no label for image {missing[0]!r}"
                        + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else "")
                        + "; label every image, or convert without labels: --labels=none"
                    )
                labels_to_array([by_fname[n] for n in self.fnames], self.fnames, source)  # checks consistency
                self.labels = [by_fname[n] for n in self.fnames]

    def _read(self, fname: str) -> bytes:
        """The file's bytes, refused from its declared size (the zip directory, or the file system) before any is
        read when larger than MAX_IMAGE_FILE_BYTES: a small zip can hold a member that inflates to gigabytes."""
        if self._zip is not None:
            size = self._zip.getinfo(fname).file_size
        else:
            size = os.path.getsize(os.path.join(self.path, fname))
        if size > MAX_IMAGE_FILE_BYTES:
            raise DatasetError(
                f"{self.name_of(fname)}: {size:,} bytes, more than any image this tool converts "
                f"({MAX_IMAGE_FILE_BYTES:,}; MAX_IMAGE_FILE_BYTES in training/dataset_sources.py); remove the file"
            )
        if self._zip is not None:
            return self._zip.read(fname)
        with open(os.path.join(self.path, fname), "rb") as file:
            return file.read()

    def __len__(self) -> int:
        return len(self.fnames)

    def name_of(self, fname: str) -> str:
        return f"{self.path}:{fname}" if self._zip is not None else f"{self.path}/{fname}"

    def name(self, idx: int) -> str:
        return self.name_of(self.fnames[idx])

    def open(self, idx: int) -> PIL.Image.Image:
        try:
            image = PIL.Image.open(io.BytesIO(self._read(self.fnames[idx])))
        except IMAGE_READ_ERRORS as err:
            raise DatasetError(
                f"{self.name(idx)}: cannot read image: {describe_image_error(err)}; fix or remove the file"
            ) from None
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
        return f"{self.prefix}[{idx}]"

    def header(self, idx: int) -> tuple[str, tuple[int, int], bool]:
        height, width, channels = self.images.shape[1:]
        return ("L" if channels == 1 else "RGB"), (width, height), False

    def open(self, idx: int) -> PIL.Image.Image:
        image = self.images[idx]
        return PIL.Image.fromarray(image[:, :, 0], "L") if image.shape[2] == 1 else PIL.Image.fromarray(image, "RGB")


def is_cifar10_source(path: str) -> bool:
    """A .tar/.tar.gz holding cifar-10-batches-py/data_batch_*, or a folder holding data_batch_1."""
    if os.path.isdir(path):
        return os.path.isfile(os.path.join(path, CIFAR10_TRAIN_BATCHES[0]))
    return os.path.isfile(path) and re.search(r"\.(tar|tar\.gz|tgz)$", path) is not None


def load_cifar10(path: str, batches: Sequence[str] = tuple(CIFAR10_TRAIN_BATCHES)) -> ArrayImageSource:
    """CIFAR-10 images (uint8 [N, 32, 32, 3]) and labels 0..9 of the named batches, in that order.

    The default is the 50,000 training images; ``batches=('test_batch',)`` gives the 10,000 test images.
    """
    try:
        images, labels = image_data.read_cifar10(path, batches)
    except image_data.DataFileError as err:
        raise DatasetError(str(err)) from None
    return ArrayImageSource("cifar10", images, labels)


def load_sklearn_digits() -> ArrayImageSource:
    """The embedded default dataset (32x32, 3-channel grey) so a materialised zip equals DigitsDataset."""
    images, labels = image_data.load_digits_images(resolution=32, num_channels=3)
    return ArrayImageSource("sklearn-digits", images.transpose(0, 2, 3, 1), labels)


def open_source(source: str, labels: str = "json") -> ImageSource:
    """The ImageSource for a --source value; raises DatasetError naming the path when it is unusable.

    labels: see FileImageSource; CIFAR-10 and the digits carry their class labels ('json'), or none ('none').
    """
    if labels not in LABEL_SOURCES:
        raise DatasetError(f"--labels={labels}: expected one of {', '.join(LABEL_SOURCES)}")
    if source == SKLEARN_DIGITS or (os.path.exists(source) and is_cifar10_source(source)):
        if labels == "folders":
            raise DatasetError(
                f"--labels=folders: {source} is not a folder of class sub-folders; it has its own "
                "class labels (the default, --labels=json) or none (--labels=none)"
            )
        src = load_sklearn_digits() if source == SKLEARN_DIGITS else load_cifar10(source)
        if labels == "none":
            src.labels = None
        return src
    if not os.path.exists(source):
        raise DatasetError(f"--source {source}: no such file or folder")
    return FileImageSource(source, labels)
