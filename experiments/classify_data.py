"""The classifier experiments' data: where each dataset's files are, how a split is read, and how an epoch's batches
are drawn, augmented, normalised and sharded over processes.

Datasets (nothing is downloaded; each path comes from its flag, else its environment variable):

========== ============================== ===================== ================ ======= ====================
name       what to put there              flag                  variable         classes test split
========== ============================== ===================== ================ ======= ====================
digits     nothing (scikit-learn's 1,797) --                    --               10      seeded 20 %
cifar10    cifar-10-python.tar.gz         --cifar-path          $RLO_CIFAR10     10      test_batch
cifar100   cifar-100-python.tar.gz        --cifar100-path       $RLO_CIFAR100    100     test
tinyimagenet tiny-imagenet-200/ folder    --tinyimagenet-path   $RLO_TINYIMAGENET 200    val (labelled)
food101    food-101/ folder               --food101-path        $RLO_FOOD101     101     meta/test.txt
========== ============================== ===================== ================ ======= ====================

Digits and CIFAR live in memory as uint8 tensors on the training device and are batched by indexing (fast on a
GPU). The image folders are decoded by a DataLoader with worker processes.

Every random choice of an epoch (the batch order and each sample's augmentation) comes from a generator seeded by
(seed, epoch) alone and is drawn for the whole global batch; each process then takes its rows ``rank::world``. So
the batches do not depend on the loss, on the number of processes or workers, or on where a run was resumed.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from dnnlib import image_data

DIGITS_TRAIN_FRACTION = 0.8
CROP_PADDING = 4  # at 32 px; image folders pad by size // 8
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    """One ``--data`` choice: what file or folder it reads, the flag and variable that say where, how many classes."""

    name: str
    expected: str  # the archive or folder name as distributed
    flag: str | None  # CLI flag that gives the path (None: embedded)
    env: str | None
    url: str
    num_classes: int
    native_size: int  # the images' side as stored (folders are resized to --image-size)


DATASETS = {
    spec.name: spec
    for spec in [
        DatasetSpec("digits", "", None, None, "", 10, 32),
        DatasetSpec(
            "cifar10",
            "cifar-10-python.tar.gz",
            "--cifar-path",
            "RLO_CIFAR10",
            "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
            10,
            32,
        ),
        DatasetSpec(
            "cifar100",
            "cifar-100-python.tar.gz",
            "--cifar100-path",
            "RLO_CIFAR100",
            "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
            100,
            32,
        ),
        DatasetSpec(
            "tinyimagenet",
            "tiny-imagenet-200",
            "--tinyimagenet-path",
            "RLO_TINYIMAGENET",
            "http://cs231n.stanford.edu/tiny-imagenet-200.zip (unzipped)",
            200,
            64,
        ),
        DatasetSpec(
            "food101",
            "food-101",
            "--food101-path",
            "RLO_FOOD101",
            "https://data.vision.ee.ethz.ch/cvl/food-101.tar.gz (extracted)",
            101,
            512,
        ),
    ]
}
DATA_NAMES = tuple(DATASETS)


def resolve_data_path(name: str, cli_path: str | None) -> pathlib.Path:
    """The dataset's path from its flag, else its variable; FileNotFoundError naming what to put where."""
    spec = DATASETS[name]
    where = (
        f"Download {spec.url} yourself (this tool downloads nothing) and pass {spec.flag}=PATH or set {spec.env}=PATH"
    )
    where += (
        " (the .tar.gz as downloaded, or the folder it extracts to)."
        if spec.expected.endswith(".tar.gz")
        else f" (the {spec.expected}/ folder itself)."
    )
    raw = cli_path or os.environ.get(spec.env)
    if not raw:
        raise FileNotFoundError(f"--data={name} needs {spec.expected}. {where}")
    path = pathlib.Path(raw).expanduser()
    if not path.exists():
        source = spec.flag if cli_path else f"${spec.env}"
        kind = "file" if spec.expected.endswith(".tar.gz") else "folder"
        raise FileNotFoundError(f"{source}: no such {kind} {str(path)!r} (expected {spec.expected}). {where}")
    return path


# ---------------------------------------------------------------------------------------------------- splits


@dataclasses.dataclass(frozen=True)
class ImageData:
    """In-memory splits: uint8 images [N, C, H, W] and int64 labels [N] for each, plus the dataset's name."""

    name: str
    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    num_classes: int = 10

    @property
    def in_channels(self) -> int:
        return int(self.train_images.shape[1])


@dataclasses.dataclass(frozen=True)
class FolderData:
    """Image-folder splits, decoded as they are read."""

    name: str
    train: image_data.ImageList
    test: image_data.ImageList

    @property
    def num_classes(self) -> int:
        return len(self.train.classes)

    in_channels = 3


def load_digits_split(max_images: int | None = None, seed: int = 0) -> ImageData:
    """The embedded digits at 32x32, one grey channel; a seeded permutation, the first 80 % train.

    ``max_images`` keeps the first that many of the permutation (for quick runs), split 80/20 the same way.
    """
    images, labels = image_data.load_digits_images(resolution=32, num_channels=1)
    order = np.random.default_rng(seed).permutation(len(images))
    if max_images is not None:
        if max_images < 2:
            raise ValueError(f"--max-images must be >= 2, got {max_images}")
        order = order[:max_images]
    cut = int(round(DIGITS_TRAIN_FRACTION * len(order)))
    train, test = order[:cut], order[cut:]
    return ImageData(
        "digits",
        torch.from_numpy(images[train]),
        torch.from_numpy(labels[train]),
        torch.from_numpy(images[test]),
        torch.from_numpy(labels[test]),
    )


def _nchw(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))


def load_cifar10_split(path: pathlib.Path) -> ImageData:
    """CIFAR-10's official split: data_batch_1..5 train, test_batch test (uint8 NCHW, labels 0..9)."""
    train_images, train_labels = image_data.read_cifar10(str(path))
    test_images, test_labels = image_data.read_cifar10(str(path), batches=(image_data.CIFAR10_TEST_BATCH,))
    return ImageData(
        "cifar10",
        _nchw(train_images),
        torch.from_numpy(train_labels),
        _nchw(test_images),
        torch.from_numpy(test_labels),
    )


def load_cifar100_split(path: pathlib.Path) -> ImageData:
    """CIFAR-100's official split with the 100 fine labels."""
    train_images, train_labels = image_data.read_cifar100(str(path), "train")
    test_images, test_labels = image_data.read_cifar100(str(path), "test")
    return ImageData(
        "cifar100",
        _nchw(train_images),
        torch.from_numpy(train_labels),
        _nchw(test_images),
        torch.from_numpy(test_labels),
        num_classes=image_data.CIFAR100_CLASSES,
    )


def load_folder_split(name: str, path: pathlib.Path) -> FolderData:
    if name == "tinyimagenet":
        return FolderData(
            name, image_data.list_tiny_imagenet(str(path), "train"), image_data.list_tiny_imagenet(str(path), "val")
        )
    return FolderData(name, image_data.list_food101(str(path), "train"), image_data.list_food101(str(path), "test"))


def load_data(name: str, path: str | None = None, max_images: int | None = None):
    """The dataset ``--data`` names: ImageData (in memory) or FolderData; errors name the file and the flag."""
    if name == "digits":
        return load_digits_split(max_images)
    resolved = resolve_data_path(name, path)
    if name == "cifar10":
        return load_cifar10_split(resolved)
    if name == "cifar100":
        return load_cifar100_split(resolved)
    return load_folder_split(name, resolved)


# ---------------------------------------------------------------------------------------------------- augmentation


@dataclasses.dataclass(frozen=True)
class AugmentSettings:
    """Training-time augmentation: random crop (zero padding of size/8, 4 px at 32) + horizontal flip, and optional
    RandAugment(num_ops, magnitude) before it (torchvision.transforms.v2, per sample, on uint8 images)."""

    crop_flip: bool = False
    randaugment: tuple[int, int] | None = None


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """The generator of everything random in one epoch's data, a function of (seed, epoch) only."""
    return torch.Generator().manual_seed(seed * 1_000_003 + epoch)


def crop_flip_params(n: int, generator: torch.Generator, padding: int = CROP_PADDING) -> tuple:
    """(dy [N], dx [N], flip [N] bool): offsets into the padded image and whether to mirror."""
    dy = torch.randint(0, 2 * padding + 1, (n,), generator=generator)
    dx = torch.randint(0, 2 * padding + 1, (n,), generator=generator)
    flip = torch.rand(n, generator=generator) < 0.5
    return dy, dx, flip


def apply_crop_flip(
    x: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor, flip: torch.Tensor, padding: int = CROP_PADDING
) -> torch.Tensor:
    """x [N, C, H, W] -> the same shape: zero-pad, take the HxW window at (dy, dx), mirror where flip."""
    n, _, h, w = x.shape
    dy, dx, flip = dy.to(x.device), dx.to(x.device), flip.to(x.device)
    padded = F.pad(x, [padding] * 4)
    rows = dy[:, None] + torch.arange(h, device=x.device)  # [N, H]
    cols = dx[:, None] + torch.arange(w, device=x.device)  # [N, W]
    cols = torch.where(flip[:, None], cols.flip(1), cols)
    batch = torch.arange(n, device=x.device)[:, None, None, None]
    channel = torch.arange(x.shape[1], device=x.device)[None, :, None, None]
    return padded[batch, channel, rows[:, None, :, None], cols[:, None, None, :]]


def random_crop_flip(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """x [N, C, H, W] -> the same shape: zero-pad by 4, take a random HxW window, flip left-right with p = 0.5."""
    return apply_crop_flip(x, *crop_flip_params(x.shape[0], generator))


def _v2():
    # Deferred: importing torchvision.transforms.v2 takes 2.8-3.5 s after torch (measured, 3 runs); only
    # RandAugment and the image folders need it.
    import torchvision.transforms.v2 as v2

    return v2


def randaugment(images: torch.Tensor, seeds: Sequence[int], num_ops: int, magnitude: int) -> torch.Tensor:
    """uint8 [N, C, H, W] (CPU) -> the same, each image through RandAugment(num_ops, magnitude) seeded by its seed."""
    v2 = _v2()
    transform = v2.RandAugment(num_ops=num_ops, magnitude=magnitude)
    out = torch.empty_like(images)
    for i, seed in enumerate(seeds):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(seed))
            out[i] = transform(images[i])
    return out


def _shard(rows: torch.Tensor, rank: int, world: int) -> torch.Tensor:
    return rows[rank::world]


# ---------------------------------------------------------------------------------------------------- batches


class TensorSource:
    """Batches of in-memory data on the device: ``train_batches`` yields (normalised float x [n, C, S, S], labels
    [n], global batch size) for this process's rows of each global batch."""

    def __init__(self, data: ImageData, augment: AugmentSettings, image_size: int, device: torch.device):
        self.data, self.augment, self.image_size, self.device = data, augment, image_size, device
        self.name, self.num_classes, self.in_channels = data.name, data.num_classes, data.in_channels
        x = data.train_images.double() / 255
        self.mean = x.mean(dim=(0, 2, 3), keepdim=True).float().to(device)
        self.std = x.std(dim=(0, 2, 3), keepdim=True).clamp_min(1e-6).float().to(device)
        self.train_images, self.train_labels = data.train_images.to(device), data.train_labels.to(device)
        self.test_images, self.test_labels = data.test_images.to(device), data.test_labels.to(device)
        self.n_train, self.n_test = len(data.train_labels), len(data.test_labels)

    def _prepare(self, images: torch.Tensor) -> torch.Tensor:
        x = (images.float() / 255 - self.mean) / self.std
        if x.shape[-1] != self.image_size:
            x = F.interpolate(x, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False)
        return x

    def train_batches(
        self, epoch: int, seed: int, batch: int, rank: int = 0, world: int = 1, workers: int = 0
    ) -> Iterator[tuple]:
        generator = epoch_generator(seed, epoch)
        order = torch.randperm(self.n_train, generator=generator)
        for first in range(0, self.n_train, batch):
            index = order[first : first + batch]
            n = index.numel()
            crops = crop_flip_params(n, generator) if self.augment.crop_flip else None
            seeds = torch.randint(0, 2**62, (n,), generator=generator) if self.augment.randaugment else None
            mine = _shard(index, rank, world).to(self.device)
            images = self.train_images[mine]
            if seeds is not None:
                images = randaugment(images.cpu(), _shard(seeds, rank, world).tolist(), *self.augment.randaugment).to(
                    self.device
                )
            x = (images.float() / 255 - self.mean) / self.std
            if crops is not None:  # after normalising, so the zero padding is the mean colour
                x = apply_crop_flip(x, *(_shard(c, rank, world) for c in crops))
            if x.shape[-1] != self.image_size:
                x = F.interpolate(x, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False)
            yield x, self.train_labels[mine], n

    def test_batches(self, batch: int, rank: int = 0, world: int = 1, workers: int = 0) -> Iterator[tuple]:
        for first in range(0, self.n_test, batch):
            mine = _shard(torch.arange(first, min(first + batch, self.n_test)), rank, world).to(self.device)
            yield self._prepare(self.test_images[mine]), self.test_labels[mine]


class _FolderDataset(torch.utils.data.Dataset):
    """Items are (index, sample seed) pairs; returns (uint8 [3, S, S], label). Train: resize to S x S, then
    RandAugment (optional), random crop (padding S/8) and flip, all seeded by the sample seed. Test: resize only."""

    def __init__(self, images: image_data.ImageList, size: int, augment: AugmentSettings | None):
        self.images, self.size, self.augment = images, size, augment

    def __len__(self) -> int:
        return len(self.images.files)

    def __getitem__(self, item):
        index, seed = item
        v2 = _v2()
        image = v2.functional.pil_to_tensor(image_data.load_rgb(self.images.files[index]))
        image = v2.functional.resize(image, [self.size, self.size], antialias=True)
        if self.augment is not None:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                if self.augment.randaugment:
                    image = v2.RandAugment(*self.augment.randaugment)(image)
                if self.augment.crop_flip:
                    image = v2.RandomCrop(self.size, padding=self.size // 8)(image)
                    image = v2.RandomHorizontalFlip()(image)
        return image, int(self.images.labels[index])


class FolderSource:
    """Batches of an image-folder dataset through a DataLoader (``workers`` processes decode JPEGs); same interface
    and the same sharding as :class:`TensorSource`. Normalised with ImageNet's mean/std (what pretrained models
    expect)."""

    def __init__(self, data: FolderData, augment: AugmentSettings, image_size: int, device: torch.device):
        self.data, self.augment, self.image_size, self.device = data, augment, image_size, device
        self.name, self.num_classes, self.in_channels = data.name, data.num_classes, 3
        self.mean = torch.tensor(IMAGENET_MEAN, device=device).view(1, 3, 1, 1)
        self.std = torch.tensor(IMAGENET_STD, device=device).view(1, 3, 1, 1)
        self.n_train, self.n_test = len(data.train.files), len(data.test.files)

    def _loader(self, dataset, batches: list, workers: int) -> Iterator[tuple]:
        loader = torch.utils.data.DataLoader(
            dataset, batch_sampler=batches, num_workers=workers, pin_memory=self.device.type == "cuda"
        )
        for images, labels in loader:
            x = images.to(self.device, non_blocking=True).float() / 255
            yield (x - self.mean) / self.std, labels.to(self.device, non_blocking=True)

    def train_batches(
        self, epoch: int, seed: int, batch: int, rank: int = 0, world: int = 1, workers: int = 0
    ) -> Iterator[tuple]:
        generator = epoch_generator(seed, epoch)
        order = torch.randperm(self.n_train, generator=generator)
        seeds = torch.randint(0, 2**62, (self.n_train,), generator=generator)
        batches, sizes = [], []
        for first in range(0, self.n_train, batch):
            index, chosen = order[first : first + batch], seeds[first : first + batch]
            batches.append(list(zip(_shard(index, rank, world).tolist(), _shard(chosen, rank, world).tolist())))
            sizes.append(index.numel())
        dataset = _FolderDataset(self.data.train, self.image_size, self.augment)
        for (x, y), n in zip(self._loader(dataset, batches, workers), sizes):
            yield x, y, n

    def test_batches(self, batch: int, rank: int = 0, world: int = 1, workers: int = 0) -> Iterator[tuple]:
        batches = [
            [(i, 0) for i in range(first, min(first + batch, self.n_test))[rank::world]]
            for first in range(0, self.n_test, batch)
        ]
        yield from self._loader(_FolderDataset(self.data.test, self.image_size, None), batches, workers)


def make_source(data, augment: AugmentSettings, image_size: int, device: torch.device):
    """The batch source for loaded data: in memory (ImageData) or decoded by workers (FolderData)."""
    source: Callable = TensorSource if isinstance(data, ImageData) else FolderSource
    return source(data, augment, image_size, device)
