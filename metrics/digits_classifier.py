"""A small digits classifier, trained here on the embedded digits, as an offline stand-in for Inception-v3.

FID needs Inception weights that an offline laptop does not have. For the embedded scikit-learn digits we train a
LeNet-style CNN ourselves instead: fixed seed, 80/20 split, float64, a few seconds on one CPU core. Its weights are
cached as a weights-only file, <cache>/detectors/digits-lenet-<recipe hash>.pt, so a change to the recipe trains a
new one and dataset statistics computed with the old one are not reused (their cache key contains this file name).

The metrics built on it (metrics/digits_metrics.py: fdd*, kdd*, cls*) accept any images that can be turned into
32x32 grey, but they are only meaningful for digit-like images, and their values are NOT comparable to FID/KID.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time

import numpy as np
import torch
import torch.nn.functional as F

from dnnlib import util as dnnlib_util
from dnnlib.files import atomic_write
from dnnlib.image_data import load_digits_images
from metrics.weight_files import DetectorFormatError, check_state_dict

INPUT_SIZE = 32
NUM_CLASSES = 10
FILE_FORMAT = 1  # bump when the file layout or the meaning of a recipe field changes
MIN_HELDOUT_ACCURACY = 0.95  # a classifier below this is refused rather than cached and used as a metric
_LUMA = (0.299, 0.587, 0.114)  # ITU-R 601, as PIL's convert('L'); grey images repeated x3 map to themselves


@dataclasses.dataclass(frozen=True)
class DigitsClassifierRecipe:
    """Everything that determines the trained weights; its hash names the cached file."""

    epochs: int = 8
    batch_size: int = 64
    learning_rate: float = 2e-3  # Adam
    max_shift: int = 2  # random translations of up to this many pixels (of 32), so generated digits need not be centred
    holdout_fraction: float = 0.2  # held out, never trained on; the accuracy on it is stored in the file
    width: int = 16  # channels of the first convolution; the second has twice as many
    feature_dim: int = 128  # the penultimate layer: the features of the Fréchet Digits Distance
    seed: int = 0

    def key(self) -> str:
        """16 hex digits of SHA-256 over the recipe, the file format and the training data's source."""
        text = json.dumps(
            dict(dataclasses.asdict(self), file_format=FILE_FORMAT, data="sklearn:digits@32x32"), sort_keys=True
        )
        return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


DEFAULT_RECIPE = DigitsClassifierRecipe()


class DigitsNet(torch.nn.Module):
    """LeNet-5-like: conv5-pool-conv5-pool-fc-fc on [N, 1, 32, 32] grey in [-1, 1] -> logits [N, 10]."""

    def __init__(self, width: int = 16, feature_dim: int = 128):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(1, width, 5)  # 32 -> 28, pooled to 14
        self.conv2 = torch.nn.Conv2d(width, 2 * width, 5)  # 14 -> 10, pooled to 5
        self.fc = torch.nn.Linear(2 * width * 5 * 5, feature_dim)
        self.head = torch.nn.Linear(feature_dim, NUM_CLASSES)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate activations [N, feature_dim] (after ReLU, like Inception's pool_3 features)."""
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        return F.relu(self.fc(x.flatten(1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def to_grey32(images: torch.Tensor) -> torch.Tensor:
    """uint8 (or float 0..255) [N, C, H, W], C in {1, 3}, any H, W -> float32 [N, 1, 32, 32] in [-1, 1].

    Colour is reduced to luma; other sizes are resized bilinearly (antialiased when shrinking).
    """
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"digits classifier: expected images [N, 1 or 3, H, W], got shape {list(images.shape)}")
    x = images.to(torch.float32)
    if x.shape[1] == 3:
        x = sum(weight * x[:, i : i + 1] for i, weight in enumerate(_LUMA))
    if tuple(x.shape[2:]) != (INPUT_SIZE, INPUT_SIZE):
        shrink = x.shape[2] > INPUT_SIZE or x.shape[3] > INPUT_SIZE
        x = F.interpolate(x, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False, antialias=shrink)
    return x / 127.5 - 1


class DigitsDetector(torch.nn.Module):
    """The classifier as a metrics detector: called like the Inception detector, on uint8 NCHW images."""

    def __init__(self, net: DigitsNet):
        super().__init__()
        self.net = net.eval().requires_grad_(False)

    @property
    def feature_dim(self) -> int:
        return self.net.fc.out_features

    def forward(self, images: torch.Tensor, return_features: bool = False) -> torch.Tensor:
        """Features [N, feature_dim] with return_features, else class probabilities [N, 10]."""
        x = to_grey32(images).to(next(self.net.parameters()).device)
        if return_features:
            return self.net.features(x)
        return F.softmax(self.net(x), dim=1)


# ----------------------------------------------------------------------------
# Training.


def split_indices(num_images: int, recipe: DigitsClassifierRecipe) -> tuple[np.ndarray, np.ndarray]:
    """(train, held-out) indices: a seeded permutation, the last holdout_fraction of it held out."""
    order = np.random.default_rng(recipe.seed).permutation(num_images)
    num_held = int(round(num_images * recipe.holdout_fraction))
    return np.sort(order[: num_images - num_held]), np.sort(order[num_images - num_held :])


def load_training_data() -> tuple[torch.Tensor, torch.Tensor]:
    """The embedded digits as classifier input: (float32 [1797, 1, 32, 32] in [-1, 1], int64 labels [1797])."""
    images, labels = load_digits_images(resolution=INPUT_SIZE, num_channels=1)
    return to_grey32(torch.from_numpy(images)), torch.from_numpy(labels)


def _shift(x: torch.Tensor, max_shift: int, generator: torch.Generator) -> torch.Tensor:
    """Translate each image of [N, 1, H, W] by its own random integer offset in [-max_shift, max_shift]^2,
    filling with the background value -1."""
    if max_shift == 0:
        return x
    n, _c, h, w = x.shape
    padded = F.pad(x, [max_shift] * 4, value=-1.0)
    dy, dx = torch.randint(0, 2 * max_shift + 1, (2, n), generator=generator)
    rows = dy[:, None] + torch.arange(h)[None]  # [N, H]
    cols = dx[:, None] + torch.arange(w)[None]  # [N, W]
    return padded[torch.arange(n)[:, None, None], 0, rows[:, :, None], cols[:, None, :]].unsqueeze(1)


@torch.no_grad()
def accuracy(net: DigitsNet, x: torch.Tensor, labels: torch.Tensor) -> float:
    """Fraction of x [N, 1, 32, 32] whose argmax class equals labels [N]."""
    return float((net.eval()(x).argmax(dim=1) == labels).float().mean())


def train_classifier(recipe: DigitsClassifierRecipe = DEFAULT_RECIPE) -> tuple[dict[str, torch.Tensor], float]:
    """Train on the recipe's training split. Returns (float32 state dict, held-out accuracy in [0, 1]).

    Deterministic beyond the seed: float64 on one CPU thread, so the thread count and the summation order of
    float32 kernels cannot change the weights (and with them every FDD value). Stored as float32.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # also avoids oversubscription on a busy machine: tiny convolutions gain nothing
    try:
        with torch.inference_mode(False), torch.enable_grad():  # callers (metric feature loops) run under no_grad
            return _train(recipe)
    finally:
        torch.set_num_threads(threads)


def _train(recipe: DigitsClassifierRecipe) -> tuple[dict[str, torch.Tensor], float]:
    x, labels = load_training_data()
    train_idx, held_idx = split_indices(len(labels), recipe)
    train_idx, held_idx = torch.from_numpy(train_idx), torch.from_numpy(held_idx)
    with torch.random.fork_rng(devices=[]):  # seeded initialisation without disturbing the caller's RNG
        torch.manual_seed(recipe.seed)
        net = DigitsNet(recipe.width, recipe.feature_dim).to(torch.float64)
    x = x.to(torch.float64)
    generator = torch.Generator().manual_seed(recipe.seed)
    optimizer = torch.optim.Adam(net.parameters(), lr=recipe.learning_rate)
    for _epoch in range(recipe.epochs):
        net.train()
        order = train_idx[torch.randperm(len(train_idx), generator=generator)]
        for start in range(0, len(order), recipe.batch_size):
            batch = order[start : start + recipe.batch_size]
            loss = F.cross_entropy(net(_shift(x[batch], recipe.max_shift, generator)), labels[batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    held_out = accuracy(net, x[held_idx], labels[held_idx])
    return {name: value.detach().to(torch.float32) for name, value in net.state_dict().items()}, held_out


# ----------------------------------------------------------------------------
# The cached weight file.


def classifier_path(recipe: DigitsClassifierRecipe = DEFAULT_RECIPE) -> str:
    """<cache root>/detectors/digits-lenet-<recipe key>.pt (cache root: $RLO_CACHE_DIR or ~/.cache/rlo_stylegan2)."""
    return dnnlib_util.make_cache_dir_path("detectors", f"digits-lenet-{recipe.key()}.pt")


def _expected_shapes(recipe: DigitsClassifierRecipe) -> dict[str, tuple[int, ...]]:
    with torch.device("meta"):
        net = DigitsNet(recipe.width, recipe.feature_dim)
    return {name: tuple(value.shape) for name, value in net.state_dict().items()}


def read_classifier_file(path: str) -> tuple[DigitsNet, DigitsClassifierRecipe, float]:
    """(network on CPU, its recipe, held-out accuracy) from a weights-only file; never executes code from it."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise DetectorFormatError(
            f"{path}: cannot read as a weights-only digits classifier file "
            f"({type(err).__name__}: {err}); delete it and it is retrained"
        ) from None
    if (
        not isinstance(payload, dict)
        or payload.get("file_format") != FILE_FORMAT
        or not {"state_dict", "recipe", "heldout_accuracy"} <= set(payload)
    ):
        raise DetectorFormatError(
            f"{path}: not a digits classifier file of format {FILE_FORMAT}; delete it and it is retrained"
        )
    try:
        recipe = DigitsClassifierRecipe(**json.loads(payload["recipe"]))
    except (TypeError, ValueError) as err:
        raise DetectorFormatError(f"{path}: unreadable recipe {payload['recipe']!r} ({err})") from None
    check_state_dict(_expected_shapes(recipe), payload["state_dict"], path)
    net = DigitsNet(recipe.width, recipe.feature_dim)
    net.load_state_dict(payload["state_dict"])
    return net.eval().requires_grad_(False), recipe, float(payload["heldout_accuracy"])


def ensure_classifier_file(recipe: DigitsClassifierRecipe = DEFAULT_RECIPE) -> str:
    """Path of the cached classifier for `recipe`, training and writing it (atomically) the first time.

    Raises RuntimeError, caching nothing, when the held-out accuracy is below MIN_HELDOUT_ACCURACY.
    """
    path = classifier_path(recipe)
    if os.path.isfile(path):
        return path
    print(f"Training the digits classifier for fdd/kdd/cls metrics (once; cached as {path})...", flush=True)
    start = time.time()
    state, held_out = train_classifier(recipe)
    if held_out < MIN_HELDOUT_ACCURACY:
        raise RuntimeError(
            f"digits classifier recipe {recipe} reached only {held_out:.1%} held-out accuracy "
            f"(< {MIN_HELDOUT_ACCURACY:.0%}); not caching it"
        )
    payload = dict(
        file_format=FILE_FORMAT,
        recipe=json.dumps(dataclasses.asdict(recipe), sort_keys=True),
        heldout_accuracy=held_out,
        state_dict=state,
    )
    atomic_write(path, lambda file: torch.save(payload, file), verify=read_classifier_file)
    print(f"Digits classifier: {held_out:.1%} held-out accuracy, trained in {time.time() - start:.1f} s", flush=True)
    return path


def build_digits_detector(path: str, device: torch.device | str = "cpu") -> DigitsDetector:
    """The detector module from a cached classifier file, on `device`."""
    net, _recipe, _held_out = read_classifier_file(path)
    return DigitsDetector(net).to(device)
