"""Training datasets: an image folder or zip (StyleGAN2-ADA layout), and the embedded default.

Images come out as uint8 numpy arrays [C, H, W] and labels as float32 vectors, exactly like the official
`training.dataset.ImageFolderDataset`, so the training loop and the metrics need not care where they came from.
Unlike the official class, problems are found when the dataset is opened (image headers are scanned) and
every error names the offending file and says how to fix it.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import re
import zipfile
import zlib
from typing import Any

import numpy as np
import PIL.Image
import torch

from dnnlib.image_data import DataFileError, load_digits_images

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")
MODE_CHANNELS = {"L": 1, "RGB": 3}  # what a prepared dataset may hold; dataset_tool.py converts the rest
EMBEDDED_DIGITS = "sklearn:digits"  # `path` value (or None) that selects the embedded default dataset
# Largest label dimension accepted (one-hot classes or vector length). ImageNet-21k has 21,841 classes; past this
# a label is a typo or an ID, not a class index, and one-hot vectors and the conditioning layer would be absurd.
MAX_LABEL_DIM = 100000
VERIFY_SAMPLE = 256  # images fully decoded by verify_decodable() by default, besides the first and the last

_FIX_HINT = (
    "prepare the images with `python dataset_tool.py --source=<your images> --dest=<dataset>.zip "
    "--resolution=<R>x<R>`, which converts colour modes and crops/resizes to a square power-of-two size"
)


# A DataLoader worker re-raises our exception as DatasetError("Caught DatasetError in DataLoader worker process N.
# Original Traceback ... training.dataset.DatasetError: <message>"); the last line starting so holds the message.
_WORKER_MESSAGE = re.compile(r"^(?:[A-Za-z_][\w.]*\.)?DatasetError: ", re.MULTILINE)


class DatasetError(ValueError):
    """A dataset that cannot be used for training; the message names the file and the fix.

    Raised when the dataset is opened or verified, and while training when an image cannot be decoded (also
    from DataLoader workers: the message is then the worker's one-line message, without the traceback).
    """

    def __init__(self, message: str = ""):
        if isinstance(message, str) and message.startswith("Caught DatasetError") and "Traceback" in message:
            found = list(_WORKER_MESSAGE.finditer(message))
            if found:
                message = message[found[-1].end() :].rstrip("\n")
        super().__init__(message)


# What reading an image can raise besides our own errors: PIL (OSError, SyntaxError, ValueError, EOFError,
# DecompressionBombError, which is a bare Exception) and zipfile/zlib for a damaged archive member.
IMAGE_READ_ERRORS = (
    OSError,
    SyntaxError,
    ValueError,
    EOFError,
    PIL.Image.DecompressionBombError,
    zipfile.BadZipFile,
    zlib.error,
)


def describe_image_error(err: BaseException) -> str:
    """The cause of an image read failure in a few words (truncated, damaged zip member, too many pixels, ...)."""
    text = str(err)
    if isinstance(err, PIL.Image.DecompressionBombError):
        found = re.search(r"\((\d+) pixels\).*?limit of (\d+) pixels", text)
        if found:
            return (
                f"{int(found[1]):,} pixels, over the limit of {int(found[2]):,} that PIL enforces against "
                '"decompression bombs"'
            )
        return f"too many pixels ({text})"
    if isinstance(err, (zipfile.BadZipFile, zlib.error)):
        return f"damaged zip member ({text})"
    if "truncated" in text:
        return f"truncated: the file ends before the image data does ({text})"
    if isinstance(err, PIL.UnidentifiedImageError):
        return "not an image file PIL can read (unknown or corrupt header)"
    return f"corrupt image data ({type(err).__name__}: {text})"


def select_subset(num_raw: int, max_size: int | None, random_seed: int) -> np.ndarray:
    """Indices of the images kept by `max_size` (sorted int64 [min(num_raw, max_size)]).

    Same rule as the official code (shuffle with RandomState(random_seed), keep the first max_size, sort), so
    `--mirror=1 --max_size=200` picks the same 200 FFHQ images as StyleGAN2-ADA runs with the same seed.
    """
    raw_idx = np.arange(num_raw, dtype=np.int64)
    if max_size is not None:
        if int(max_size) != max_size or max_size < 1:
            raise DatasetError(f"max_size must be a positive integer or None, got {max_size!r}")
        if num_raw > max_size:
            np.random.RandomState(random_seed).shuffle(raw_idx)
            raw_idx = np.sort(raw_idx[: int(max_size)])
    return raw_idx


def parse_labels_json(text: str, source: str) -> dict[str, Any]:
    """Parse a dataset.json (`{"labels": [[fname, label], ...]}` or `{"labels": null}`) into {fname: label}.

    Labels are an int (class index, one-hot encoded later) or a list of floats. `source` names the file in errors.
    """
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise DatasetError(f"{source}: not valid JSON ({err})") from None
    except RecursionError:
        raise DatasetError(f"{source}: JSON nested too deeply to be a dataset.json") from None
    if not isinstance(data, dict) or "labels" not in data:
        raise DatasetError(
            f'{source}: expected an object with a "labels" key, e.g. {{"labels": [["00000/img00000000.png", 3], ...]}}'
        )
    entries = data["labels"]
    if entries is None:
        return {}
    if not isinstance(entries, list):
        raise DatasetError(
            f'{source}: "labels" must be a list of [filename, label] pairs or null, got {type(entries).__name__}'
        )
    labels = {}
    for pos, entry in enumerate(entries):
        if not (isinstance(entry, (list, tuple)) and len(entry) == 2 and isinstance(entry[0], str)):
            raise DatasetError(f"{source}: labels[{pos}] must be a [filename, label] pair, got {_short(entry)}")
        fname, label = entry
        ok_int = isinstance(label, int) and not isinstance(label, bool) and label >= 0
        ok_vec = (
            isinstance(label, list)
            and len(label) > 0
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in label)
        )
        if not (ok_int or ok_vec):
            raise DatasetError(
                f"{source}: label of {fname!r} must be a class index >= 0 or a list of numbers, got {_short(label)}"
            )
        if ok_int and label >= MAX_LABEL_DIM:
            raise DatasetError(
                f"{source}: class index {label} of {fname!r} would make a {label + 1}-dimensional "
                f"one-hot label (the limit is {MAX_LABEL_DIM}); class indices must count 0, 1, 2, ... "
                "over the classes: renumber them (dataset_tool.py --labels=folders does this)"
            )
        if ok_vec:
            if len(label) > MAX_LABEL_DIM:
                raise DatasetError(
                    f"{source}: label vector of {fname!r} has {len(label)} values (the limit is {MAX_LABEL_DIM})"
                )
            bad = next((v for v in label if not _is_float32(v)), None)
            if bad is not None:
                raise DatasetError(
                    f"{source}: label vector of {fname!r} holds {bad!r}; label values must be finite "
                    "numbers within float32 range"
                )
        labels[fname.replace("\\", "/")] = label
    return labels


def _is_float32(value: int | float) -> bool:
    try:
        return math.isfinite(value) and abs(float(value)) <= float(np.finfo(np.float32).max)
    except OverflowError:  # an int too large for a float
        return False


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def labels_to_array(labels: list[Any], fnames: list[str], source: str) -> np.ndarray:
    """Stack per-image labels: int64 [N] class indices, or float32 [N, D] vectors (all the same kind)."""
    if all(isinstance(label, int) for label in labels):
        return np.asarray(labels, dtype=np.int64)
    for label, fname in zip(labels, fnames):
        if isinstance(label, int):
            raise DatasetError(
                f"{source}: {fname!r} has a class index but other images have label vectors; use one kind"
            )
        if len(label) != len(labels[0]):
            raise DatasetError(
                f"{source}: label of {fname!r} has {len(label)} values, but the label of {fnames[0]!r} "
                f"has {len(labels[0])}; every label vector must have the same length"
            )
    return np.asarray(labels, dtype=np.float32)


class Dataset(torch.utils.data.Dataset):
    """Base class: subset selection, x-flip mirroring and label encoding over `_load_raw_image`."""

    def __init__(
        self,
        name: str,
        raw_shape: list[int],
        raw_idx: np.ndarray,
        use_labels: bool = False,
        xflip: bool = False,
        raw_labels: np.ndarray | None = None,
    ):
        self._name = name
        self._raw_shape = list(raw_shape)  # [num_raw_images, C, H, W]
        self._use_labels = use_labels
        if raw_labels is None or not use_labels:
            raw_labels = np.zeros([raw_shape[0], 0], dtype=np.float32)
        self._raw_labels = raw_labels
        if raw_labels.dtype == np.int64:
            self._label_shape = [int(raw_labels.max()) + 1] if raw_labels.size else [0]
        else:
            self._label_shape = list(raw_labels.shape[1:])
        self._raw_idx = np.asarray(raw_idx, dtype=np.int64)
        self._xflip = np.zeros(self._raw_idx.size, dtype=np.uint8)
        if xflip:  # the mirrored copy follows the originals, as in the official code
            self._raw_idx = np.tile(self._raw_idx, 2)
            self._xflip = np.concatenate([self._xflip, np.ones_like(self._xflip)])

    def _load_raw_image(self, raw_idx: int) -> np.ndarray:  # uint8 [C, H, W]
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    def __len__(self) -> int:
        return self._raw_idx.size

    def __getitem__(self, idx: int) -> tuple[np.ndarray, np.ndarray]:
        """(uint8 image [C, H, W], float32 label [label_dim]); mirrored items are flipped left-right."""
        image = self._load_raw_image(int(self._raw_idx[idx]))
        if self._xflip[idx]:
            image = image[:, :, ::-1]
        return np.ascontiguousarray(image), self.get_label(idx)

    def get_label(self, idx: int) -> np.ndarray:
        """float32 [label_dim]: one-hot for class-index labels, the stored vector otherwise."""
        label = self._raw_labels[self._raw_idx[idx]]
        if self._raw_labels.dtype == np.int64:
            onehot = np.zeros(self.label_shape, dtype=np.float32)
            onehot[label] = 1
            return onehot
        return label.astype(np.float32, copy=True)

    def verify_decodable(self, sample: int | None = VERIFY_SAMPLE) -> int:
        """Decode the first and the last image and `sample` others (all when None); returns how many were decoded.

        The sample is deterministic (RandomState(0) over the images kept by max_size). Headers are already checked
        when the dataset is opened; this catches truncated or damaged pixel data before a run starts, at the
        cost of reading the sampled files. Raises DatasetError naming the first image that fails.
        """
        if sample is not None and (isinstance(sample, bool) or int(sample) != sample or sample < 0):
            raise DatasetError(f"verify_decodable: sample must be an integer >= 0 or None, got {sample!r}")
        kept = np.unique(self._raw_idx)
        if sample is None or sample + 2 >= kept.size:
            chosen = kept
        else:
            picks = np.random.RandomState(0).choice(kept.size, size=int(sample), replace=False)
            chosen = kept[np.unique(np.concatenate([[0, kept.size - 1], picks]))]
        pixels = hashlib.sha256()
        for raw_idx in chosen:
            image = self._load_raw_image(int(raw_idx))
            pixels.update(np.ascontiguousarray(image).tobytes())
        self.sample_digest = pixels.hexdigest()[:16]
        return int(chosen.size)

    def fingerprint(self) -> dict[str, Any]:
        """What a resumed run compares to see whether its data changed: the image count, a digest of the image
        names, and one of the pixels verify_decodable() decoded (its sample: the first, the last and 256 more)."""
        if getattr(self, "sample_digest", None) is None:
            self.verify_decodable()
        names = hashlib.sha256("\n".join(self._names()).encode()).hexdigest()[:16]
        return dict(images=int(self._raw_shape[0]), names=names, pixels=self.sample_digest)

    def _names(self) -> list[str]:
        return []

    def get_details(self, idx: int) -> dict[str, Any]:
        return dict(
            raw_idx=int(self._raw_idx[idx]),
            xflip=bool(self._xflip[idx]),
            raw_label=self._raw_labels[self._raw_idx[idx]].copy(),
        )

    @property
    def name(self) -> str:
        return self._name

    @property
    def image_shape(self) -> list[int]:
        return list(self._raw_shape[1:])

    @property
    def num_channels(self) -> int:
        return self.image_shape[0]

    @property
    def resolution(self) -> int:
        assert self.image_shape[1] == self.image_shape[2]
        return self.image_shape[1]

    @property
    def label_shape(self) -> list[int]:
        return list(self._label_shape)

    @property
    def label_dim(self) -> int:
        return int(np.prod(self._label_shape))

    @property
    def has_labels(self) -> bool:
        return self.label_dim != 0

    @property
    def has_onehot_labels(self) -> bool:
        return self._raw_labels.dtype == np.int64


def _is_listed(fname: str) -> bool:
    """An image file of the dataset, not macOS zip debris ('__MACOSX/', '._x.png') or another hidden file."""
    parts = fname.split("/")
    if any(part.startswith(".") or part == "__MACOSX" for part in parts):
        return False
    return os.path.splitext(fname)[1].lower() in IMAGE_EXTENSIONS


class ImageFolderDataset(Dataset):
    """A folder (searched recursively) or zip of PNG/JPEG images, with optional labels in dataset.json.

    Every kept image must be 8-bit greyscale ('L') or RGB, square, a power of two in size, and all alike;
    `resolution`, when given, must match. Headers of the kept images are read up front, pixels on demand.
    """

    def __init__(
        self,
        path: str,
        resolution: int | None = None,
        use_labels: bool = False,
        max_size: int | None = None,
        xflip: bool = False,
        random_seed: int = 0,
    ):
        self._path = str(path)
        self._zipfile = None
        if os.path.isdir(self._path):
            self._type = "dir"
            self._all_fnames = sorted(
                os.path.relpath(os.path.join(root, fname), start=self._path).replace("\\", "/")
                for root, _dirs, files in os.walk(self._path, followlinks=True)
                for fname in files
            )
        elif os.path.isfile(self._path):
            if not zipfile.is_zipfile(self._path):
                raise DatasetError(f"{self._path}: not a folder or a zip archive; " + _FIX_HINT)
            self._type = "zip"
            self._all_fnames = sorted(self._get_zipfile().namelist())
        else:
            raise DatasetError(f"dataset path does not exist: {self._path}")
        self._image_fnames = [fname for fname in self._all_fnames if _is_listed(fname)]
        if not self._image_fnames:
            raise DatasetError(self._no_images_message())

        raw_idx = select_subset(len(self._image_fnames), max_size, random_seed)
        self._raw_mode, shape = self._check_headers(raw_idx, resolution)
        raw_labels = self._load_raw_labels() if use_labels else None
        name = os.path.splitext(os.path.basename(self._path.rstrip("/\\")))[0]
        super().__init__(
            name=name,
            raw_shape=[len(self._image_fnames)] + shape,
            raw_idx=raw_idx,
            use_labels=use_labels,
            xflip=xflip,
            raw_labels=raw_labels,
        )

    def _names(self) -> list[str]:
        return list(self._image_fnames)

    def _no_images_message(self) -> str:
        """No PNG/JPEG: say which extensions are there and how to convert them (dataset_tool.py reads them)."""
        counts: dict[str, int] = {}
        for fname in self._all_fnames:
            if not any(part.startswith(".") or part == "__MACOSX" for part in fname.split("/")):
                ext = os.path.splitext(fname)[1].lower() or "(no extension)"
                counts[ext] = counts.get(ext, 0) + 1
        looked = "/".join(IMAGE_EXTENSIONS)
        if not counts:
            return f"{self._path}: no files found (a training set holds {looked} images)"
        found = ", ".join(f"{n} {ext}" for ext, n in sorted(counts.items(), key=lambda item: (-item[1], item[0])))
        PIL.Image.init()
        convertible = sorted(ext for ext in counts if ext in PIL.Image.EXTENSION)
        if not convertible:
            return (
                f"{self._path}: no images found: a training set holds {looked} files (searched recursively); "
                f"found {found}"
            )
        dest = self._path.rstrip("/\\") + ".zip"
        if self._type == "zip":
            dest = os.path.splitext(self._path)[0] + "-converted.zip"
        return (
            f"{self._path}: no PNG or JPEG images; found {found}. Training reads only {looked}; convert them "
            f"with `python dataset_tool.py --source={self._path} --dest={dest}` (it reads "
            f"{', '.join(convertible)} and makes square power-of-two images), then use --data={dest}"
        )

    def _where(self, fname: str) -> str:
        return f"{self._path}/{fname}" if self._type == "dir" else f"{self._path}:{fname}"

    def _get_zipfile(self) -> zipfile.ZipFile:
        assert self._type == "zip"
        if self._zipfile is None:
            try:
                self._zipfile = zipfile.ZipFile(self._path)
            except (zipfile.BadZipFile, OSError) as err:
                raise DatasetError(
                    f"{self._path}: damaged zip archive ({err}); re-create it with dataset_tool.py or copy it again"
                ) from None
        return self._zipfile

    def _read_error(self, fname: str, err: BaseException) -> DatasetError:
        """The one-line error for an image that cannot be read: the file, the cause, and what to do."""
        if isinstance(err, PIL.Image.DecompressionBombError):
            fix = (
                "remove it or replace it with a smaller image (dataset_tool.py --resolution makes training-sized ones)"
            )
        elif isinstance(err, (zipfile.BadZipFile, zlib.error)):
            fix = "the zip is damaged: re-create it with dataset_tool.py or copy it again"
        elif self._type == "zip":
            fix = "re-create the zip with dataset_tool.py from intact source images"
        else:
            fix = "replace or remove this file, or re-create the dataset with dataset_tool.py"
        return DatasetError(f"{self._where(fname)}: cannot decode image: {describe_image_error(err)}; {fix}")

    def _open_file(self, fname: str):
        if self._type == "dir":
            return open(os.path.join(self._path, fname), "rb")
        return self._get_zipfile().open(fname, "r")

    def close(self) -> None:
        if getattr(self, "_zipfile", None) is not None:
            self._zipfile.close()
        self._zipfile = None

    def __getstate__(self):  # DataLoader workers reopen the zip themselves
        return dict(self.__dict__, _zipfile=None)

    def _check_headers(self, raw_idx: np.ndarray, resolution: int | None) -> tuple[str, list[int]]:
        """Mode and [C, H, W] shared by the kept images, read from their headers; raise naming the culprit."""
        first = None
        for idx in raw_idx:
            fname = self._image_fnames[idx]
            try:
                with self._open_file(fname) as file:
                    with PIL.Image.open(file) as image:
                        mode, size = image.mode, image.size
            except DatasetError:
                raise
            except IMAGE_READ_ERRORS as err:
                raise self._read_error(fname, err) from None
            if mode not in MODE_CHANNELS:
                raise DatasetError(
                    f"{self._where(fname)}: colour mode {mode!r} is not 8-bit greyscale or RGB; " + _FIX_HINT
                )
            if first is None:
                first = (fname, mode, size)
                width, height = size
                if width != height:
                    raise DatasetError(f"{self._where(fname)}: image is {width}x{height}, not square; " + _FIX_HINT)
                if width < 4 or width & (width - 1):
                    raise DatasetError(
                        f"{self._where(fname)}: size {width}x{height} is not a power of two >= 4; " + _FIX_HINT
                    )
                if resolution is not None and width != resolution:
                    raise DatasetError(
                        f"{self._where(fname)}: image is {width}x{height} but resolution={resolution} "
                        f"was requested; " + _FIX_HINT
                    )
            elif (mode, size) != first[1:]:
                raise DatasetError(
                    f"{self._where(fname)}: image is {size[0]}x{size[1]} {mode}, but "
                    f"{first[0]} is {first[2][0]}x{first[2][1]} {first[1]}; all images must be alike; " + _FIX_HINT
                )
        _fname, mode, (width, height) = first
        return mode, [MODE_CHANNELS[mode], height, width]

    def _load_raw_image(self, raw_idx: int) -> np.ndarray:
        fname = self._image_fnames[raw_idx]
        try:
            with self._open_file(fname) as file:
                data = file.read()
            with PIL.Image.open(io.BytesIO(data)) as image:
                image.load()
                mode = image.mode
                array = np.asarray(image)
        except DatasetError:
            raise
        except IMAGE_READ_ERRORS as err:
            raise self._read_error(fname, err) from None
        if array.ndim == 2:
            array = array[:, :, np.newaxis]
        array = array.transpose(2, 0, 1)
        if mode != self._raw_mode or list(array.shape) != self.image_shape or array.dtype != np.uint8:
            raise DatasetError(
                f"{self._where(fname)}: decoded as {mode} {list(array.shape)} {array.dtype}, "
                f"expected {self._raw_mode} {self.image_shape} uint8"
            )
        return array

    def _load_raw_labels(self) -> np.ndarray | None:
        """int64 [N] or float32 [N, D] labels in image order, or None when there is no dataset.json."""
        if "dataset.json" not in self._all_fnames:
            return None
        source = self._where("dataset.json")
        try:
            with self._open_file("dataset.json") as file:
                text = file.read().decode("utf-8")
        except UnicodeDecodeError as err:
            raise DatasetError(f"{source}: not UTF-8 text ({err})") from None
        except (OSError, zipfile.BadZipFile, zlib.error) as err:
            raise DatasetError(f"{source}: cannot read ({err}); re-create the dataset with dataset_tool.py") from None
        by_fname = parse_labels_json(text, source)
        if not by_fname:
            return None
        missing = [fname for fname in self._image_fnames if fname not in by_fname]
        if missing:
            more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
            raise DatasetError(
                f"{source}: no label for image {missing[0]!r}{more}; every image needs a label, "
                "or drop dataset.json and train without --cond"
            )
        return labels_to_array([by_fname[fname] for fname in self._image_fnames], self._image_fnames, source)


# ----------------------------------------------------------------------------
# The embedded default dataset: scikit-learn's 1,797 8x8 handwritten digits (shipped inside scikit-learn), scaled
# to 0..255 (ink bright on black, like MNIST), upsampled with PIL's bicubic filter to the requested power-of-two
# resolution (32x32 by default) and, by default, three grey channels: 3-channel images go straight into
# Inception for FID, and the same network configs work for this and for RGB datasets.


class DigitsDataset(Dataset):
    """scikit-learn digits as a training set with the ImageFolderDataset interface (10 one-hot labels)."""

    def __init__(
        self,
        resolution: int | None = None,
        use_labels: bool = False,
        max_size: int | None = None,
        xflip: bool = False,
        random_seed: int = 0,
        num_channels: int = 3,
    ):
        resolution = 32 if resolution is None else int(resolution)
        try:
            self._images, labels = load_digits_images(resolution, num_channels)
        except DataFileError as err:
            raise DatasetError(str(err)) from None
        raw_idx = select_subset(len(self._images), max_size, random_seed)
        super().__init__(
            name=f"digits{resolution}",
            raw_shape=list(self._images.shape),
            raw_idx=raw_idx,
            use_labels=use_labels,
            xflip=xflip,
            raw_labels=labels,
        )

    def _load_raw_image(self, raw_idx: int) -> np.ndarray:
        return self._images[raw_idx]


def open_dataset(path: str | None = None, **kwargs) -> Dataset:
    """The dataset that `path` names: None or 'sklearn:digits' gives the embedded digits, else a folder/zip.

    kwargs are the JSON-able ImageFolderDataset kwargs (resolution, use_labels, max_size, xflip, random_seed);
    this is how `training_set_kwargs` stored in a snapshot are turned back into a dataset.
    """
    if kwargs.get("class_name") in ("training.dataset.ImageFolderDataset", None):
        kwargs.pop("class_name", None)  # present in official snapshots' training_set_kwargs; the class is implied
    if path is None or path == EMBEDDED_DIGITS:
        return DigitsDataset(**kwargs)
    return ImageFolderDataset(path=path, **kwargs)
