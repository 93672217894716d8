"""VGG16 with LPIPS weights, for perceptual path length (LPIPS) and precision/recall (fc2 features).

Parameter names follow StyleGAN2-ADA's vgg16.pt detector (`layers.conv1` .. `layers.conv13`, `layers.fc1` ..
`layers.fc3`, `lpips0` .. `lpips4`), so that file loads by name. The same network can be assembled from
torchvision's vgg16-397923af.pth plus the LPIPS v0.1 linear weights (lpips package, weights/v0.1/vgg.pth).

Input: NCHW images with values in [0, 255]. Normalisation is torchvision's ImageNet mean/std on [0, 1],
which is exactly LPIPS's ScalingLayer on [-1, 1].
"""

from __future__ import annotations

import collections
from collections.abc import Mapping

import torch
import torch.nn.functional as F

from metrics.tf_resize import resize_like_tf1
from metrics.weight_files import DetectorFormatError, check_state_dict, is_torchscript_archive, read_weight_file

INPUT_SIZE = 224
FEATURE_DIM = 4096
NUM_CLASSES = 1000
LPIPS_CHANNELS = (64, 128, 256, 512, 512)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# (name, in, out) of the 13 convolutions; 'M' marks a 2x2 max pool. LPIPS taps the ReLU after each stage's last conv.
_CONVS = [
    ("conv1", 3, 64),
    ("conv2", 64, 64),
    "M",
    ("conv3", 64, 128),
    ("conv4", 128, 128),
    "M",
    ("conv5", 128, 256),
    ("conv6", 256, 256),
    ("conv7", 256, 256),
    "M",
    ("conv8", 256, 512),
    ("conv9", 512, 512),
    ("conv10", 512, 512),
    "M",
    ("conv11", 512, 512),
    ("conv12", 512, 512),
    ("conv13", 512, 512),
    "M",
]
_LPIPS_TAPS = ("conv2", "conv4", "conv7", "conv10", "conv13")
_TORCHVISION_CONV_INDEX = [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28]


class VGG16(torch.nn.Module):
    """VGG16 called like StyleGAN2-ADA's vgg16.pt.

    forward(img [N, 3, H, W] in [0, 255], resize_images=True, return_lpips=False, return_features=False):
      return_lpips=True -> [N, D] embedding whose squared L2 distance between two images is their LPIPS distance;
      return_features=True -> fc2 features [N, 4096] (after ReLU; images resized to 224x224);
      otherwise -> class probabilities [N, 1000].
    """

    def __init__(self):
        super().__init__()
        layers: list[tuple[str, torch.nn.Module]] = []
        for pool_index, item in enumerate(_CONVS):
            if item == "M":
                layers.append((f"pool{pool_index}", torch.nn.MaxPool2d(kernel_size=2, stride=2)))
            else:
                name, cin, cout = item
                layers.append((name, torch.nn.Conv2d(cin, cout, kernel_size=3, padding=1)))
        layers += [
            ("fc1", torch.nn.Linear(512 * 7 * 7, 4096)),
            ("fc2", torch.nn.Linear(4096, 4096)),
            ("fc3", torch.nn.Linear(4096, NUM_CLASSES)),
        ]
        self.layers = torch.nn.Sequential(collections.OrderedDict(layers))
        for i, channels in enumerate(LPIPS_CHANNELS):
            self.register_parameter(f"lpips{i}", torch.nn.Parameter(torch.ones([channels])))
        self.register_buffer("img_mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1) * 255, persistent=False)
        self.register_buffer("img_std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1) * 255, persistent=False)

    def _trunk(self, x: torch.Tensor, taps: list[torch.Tensor] | None) -> torch.Tensor:
        for name, module in self.layers.named_children():
            if name.startswith("fc"):
                break
            x = module(x)
            if isinstance(module, torch.nn.Conv2d):
                x = F.relu(x)
                if taps is not None and name in _LPIPS_TAPS:
                    taps.append(x)
        return x

    def lpips_embedding(self, taps: list[torch.Tensor]) -> torch.Tensor:
        """Concatenate unit-normalised, sqrt(lin weight)-scaled, 1/sqrt(HW)-scaled tap activations."""
        parts = []
        for i, feat in enumerate(taps):
            feat = feat / (feat.square().sum(dim=1, keepdim=True).sqrt() + 1e-10)
            scale = getattr(self, f"lpips{i}").to(feat.dtype).sqrt().view(1, -1, 1, 1)
            parts.append((feat * scale).flatten(1) / (feat.shape[2] * feat.shape[3]) ** 0.5)
        return torch.cat(parts, dim=1)

    def forward(
        self, img: torch.Tensor, resize_images: bool = True, return_lpips: bool = False, return_features: bool = False
    ) -> torch.Tensor:
        if img.ndim != 4 or img.shape[1] != 3:
            raise ValueError(f"VGG16 expects images [N, 3, H, W], got {list(img.shape)}")
        x = img.to(torch.float32)
        if resize_images:
            x = resize_like_tf1(x, INPUT_SIZE, INPUT_SIZE)
        x = (x - self.img_mean) / self.img_std
        taps: list[torch.Tensor] | None = [] if return_lpips else None
        x = self._trunk(x, taps)
        if return_lpips:
            return self.lpips_embedding(taps)
        x = F.adaptive_avg_pool2d(x, (7, 7)).flatten(1)
        x = F.relu(self.layers.fc1(x))
        x = F.relu(self.layers.fc2(x))
        if return_features:
            return x
        return torch.softmax(self.layers.fc3(x), dim=1)


def _expected_shapes() -> dict[str, tuple[int, ...]]:
    with torch.device("meta"):
        return {name: tuple(t.shape) for name, t in VGG16().state_dict().items()}


def convert_torchvision_state(
    vgg: Mapping[str, torch.Tensor], lpips: Mapping[str, torch.Tensor] | None, vgg_source: str, lpips_source: str | None
) -> dict[str, torch.Tensor]:
    """torchvision vgg16 state dict (+ LPIPS v0.1 'lin{i}.model.1.weight' [1, C, 1, 1]) -> our names.

    Without `lpips` the LPIPS weights are set to NaN, so PPL fails loudly instead of using wrong weights.
    """
    ours = _expected_shapes()
    expected: dict[str, tuple[int, ...]] = {}
    mapping: dict[str, str] = {}
    for index, number in zip(_TORCHVISION_CONV_INDEX, range(1, 14)):
        for field in ("weight", "bias"):
            mapping[f"features.{index}.{field}"] = f"layers.conv{number}.{field}"
    for index, number in zip((0, 3, 6), (1, 2, 3)):
        for field in ("weight", "bias"):
            mapping[f"classifier.{index}.{field}"] = f"layers.fc{number}.{field}"
    expected = {tv: ours[our] for tv, our in mapping.items()}
    check_state_dict(expected, vgg, vgg_source)
    out = {our: vgg[tv].to(torch.float32) for tv, our in mapping.items()}
    if lpips is None:
        for i, channels in enumerate(LPIPS_CHANNELS):
            out[f"lpips{i}"] = torch.full([channels], float("nan"))
        return out
    lin_expected = {f"lin{i}.model.1.weight": (1, c, 1, 1) for i, c in enumerate(LPIPS_CHANNELS)}
    check_state_dict(lin_expected, lpips, str(lpips_source))
    for i in range(len(LPIPS_CHANNELS)):
        out[f"lpips{i}"] = lpips[f"lin{i}.model.1.weight"].reshape(-1).to(torch.float32)
    return out


def convert_stylegan_state(state: Mapping[str, torch.Tensor], source: str) -> dict[str, torch.Tensor]:
    """StyleGAN2-ADA vgg16.pt tensors -> our names (the LPIPS weights may be stored as [C], [C,1,1] or [1,C,1,1])."""
    ours = _expected_shapes()
    reshaped = dict(state)
    for i, channels in enumerate(LPIPS_CHANNELS):
        name = f"lpips{i}"
        if name in reshaped and reshaped[name].numel() == channels:
            reshaped[name] = reshaped[name].reshape(channels)
    # Other tensors the archive may carry (e.g. normalisation constants) are not needed; the weights must all be there.
    check_state_dict(ours, reshaped, source, allow_extra=True)
    return {name: reshaped[name].to(torch.float32) for name in ours}


def load_vgg16_state(path: str, lpips_path: str | None = None) -> dict[str, torch.Tensor]:
    """Our-named state dict from vgg16.pt (TorchScript), or from torchvision's vgg16 .pth (+ LPIPS lin .pth)."""
    state = read_weight_file(path)
    if is_torchscript_archive(path):
        return convert_stylegan_state(state, path)
    if "features.0.weight" in state:
        lpips = read_weight_file(lpips_path) if lpips_path is not None else None
        return convert_torchvision_state(state, lpips, path, lpips_path)
    raise DetectorFormatError(
        f"{path}: neither StyleGAN2-ADA's vgg16.pt (TorchScript) nor torchvision's "
        f"vgg16-397923af.pth state dict (first keys: {', '.join(list(state)[:4])})"
    )


def build_vgg16(path: str, lpips_path: str | None = None, device: torch.device | str = "cpu") -> VGG16:
    """VGG16 with the weights in `path` (and LPIPS weights), eval mode, frozen, on `device`."""
    state = load_vgg16_state(path, lpips_path)
    for i in range(len(LPIPS_CHANNELS)):
        weights = state[f"lpips{i}"]
        if not torch.isnan(weights).any() and (weights < 0).any():
            raise DetectorFormatError(
                f"{lpips_path or path}: LPIPS weights lpips{i} have negative entries; "
                "LPIPS lin weights are non-negative"
            )
    with torch.device("meta"):
        model = VGG16()
    model.load_state_dict({k: v.contiguous() for k, v in state.items()}, strict=True, assign=True)
    model.img_mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1) * 255
    model.img_std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1) * 255
    return model.eval().requires_grad_(False).to(device)


def has_lpips_weights(model: VGG16) -> bool:
    """False when the model was built without LPIPS lin weights (torchvision weights only)."""
    return not any(torch.isnan(getattr(model, f"lpips{i}")).any() for i in range(len(LPIPS_CHANNELS)))
