"""Image classifiers for the loss comparison: a small CNN that trains in seconds on a CPU, and the paper's ResNet,
ViT and Swin from timm (random init, nothing downloaded; a local pretrained file for fine-tuning).

Every model is built from its library's default initialisation, so ``torch.manual_seed(s)`` before construction
fixes the initial weights; the experiment relies on that to start every loss from the same network.

Input sizes. timm's ResNet/ViT/Swin are ImageNet designs (224 px); at small inputs (``image_size < 128``: CIFAR's and
the digits' 32 px, Tiny-ImageNet's native 64 px) they are adapted the usual way for CIFAR:

- ResNet: a 3x3 stride-1 stem convolution (stride 2 for the CPU-sized resnet-tiny) and no max-pool, so a 32x32
  input reaches the first block at 32x32 (the ImageNet stem would shrink it to 8x8), as the CIFAR ResNet of the
  paper's code: at 10 classes ResNet-34, -50, -101 have 21.3M, 23.5M, 42.5M parameters (Table 3: 21.3M, 23.7M, 42.7M).
- ViT: patch ``image_size // 8`` (4 at 32 px, as the paper's code), so 8x8 = 64 tokens; ViT-B at patch 4 has the
  85.1M parameters of Table 3.
- Swin: patch ``image_size // 16`` (2 at 32 px) and window 4, so the four stages see 16, 8, 4 and 2 tokens a side
  (timm shrinks a window to the stage's size where the stage is smaller).

At ``image_size >= 128`` the timm models are used as designed (ResNet's 7x7 stride-2 stem, ViT patch 16, Swin
patch 4 window 7), which is what ImageNet-pretrained files fit: fine-tuning runs resize Tiny-ImageNet and Food-101
to 224.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import torch
from torch import nn

SMALL_INPUT_BELOW = 128  # image sizes under this get the CIFAR adaptations above
TIMM_REQUIREMENTS = "requirements-extras.txt"  # the file that pins timm


class SmallCNN(nn.Module):
    """Three 3x3 conv + ReLU + 2x2 max-pool stages (width, 2*width, 4*width), global average pool, one Linear.

    Input [N, C, H, W] with H, W divisible by 8 (32x32 here); output logits [N, num_classes].
    """

    def __init__(self, in_channels: int, num_classes: int, width: int = 16):
        super().__init__()
        layers = []
        channels = in_channels
        for stage in range(3):
            out = width * 2**stage
            layers += [nn.Conv2d(channels, out, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
            channels = out
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert x.ndim == 4 and x.shape[2] % 8 == 0 and x.shape[3] % 8 == 0, f"need [N, C, 8a, 8b], got {list(x.shape)}"
        return self.head(self.features(x).mean(dim=(2, 3)))


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """One ``--model`` choice: the timm architecture it builds (None: ours) and the timm kwargs it fixes."""

    name: str
    timm_name: str | None
    family: str  # 'cnn', 'resnet', 'vit' or 'swin': which input-size adaptation applies
    kwargs: tuple[tuple[str, Any], ...] = ()
    doc: str = ""
    stem_stride: int = 1  # ResNet at small inputs: the 3x3 stem's stride


def _spec(name, timm_name, family, doc, stem_stride=1, **kwargs) -> ModelSpec:
    return ModelSpec(name, timm_name, family, tuple(sorted(kwargs.items())), doc, stem_stride)


# The one list of models; CLI choices, presets and tests derive from it.
MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in [
        _spec("small-cnn", None, "cnn", "3 conv stages 16/32/64, ~24k parameters (the CPU default)"),
        _spec("resnet18", "resnet18", "resnet", "ResNet-18"),
        _spec("resnet34", "resnet34", "resnet", "ResNet-34 (Table 3)"),
        _spec("resnet50", "resnet50", "resnet", "ResNet-50 (Table 2, 3)"),
        _spec("resnet101", "resnet101", "resnet", "ResNet-101 (Table 3)"),
        _spec("vit-s", "vit_small_patch16_224", "vit", "ViT-S: width 384, depth 12, 6 heads (Table 3)"),
        _spec("vit-b", "vit_base_patch16_224", "vit", "ViT-B: width 768, depth 12, 12 heads (Table 2, 3)"),
        _spec("vit-l", "vit_large_patch16_224", "vit", "ViT-L: width 1024, depth 24, 16 heads (Table 3)"),
        _spec("swin-t", "swin_tiny_patch4_window7_224", "swin", "Swin-T: width 96, depths 2-2-6-2"),
        _spec("swin-b", "swin_base_patch4_window7_224", "swin", "Swin-B: width 128, depths 2-2-18-2 (Table 2)"),
        # CPU-sized members of the same timm families, for the measured digits runs
        _spec(
            "resnet-tiny",
            "resnet18",
            "resnet",
            "timm ResNet-18 blocks, 1 per stage, widths 8-16-32-64, stride-2 3x3 stem (~0.08M)",
            stem_stride=2,
            layers=(1, 1, 1, 1),
            channels=(8, 16, 32, 64),
            stem_width=8,
        ),
        _spec(
            "vit-tiny",
            "vit_small_patch16_224",
            "vit",
            "timm ViT, width 32, depth 2, 2 heads, MLP x2 (~0.03M)",
            embed_dim=32,
            depth=2,
            num_heads=2,
            mlp_ratio=2.0,
        ),
    ]
}
MODEL_NAMES: tuple[str, ...] = tuple(MODELS)


class MissingExtraError(ImportError):
    """timm is not installed; the message says which extra to install."""


class PretrainedError(ValueError):
    """A pretrained file that is missing, unreadable or made for another model; the message names file and model."""


def _timm():
    # Deferred: importing timm takes 1.3-1.9 s after torch and torchvision (measured, 3 runs), and it is an extra:
    # the loss library and the small CNN run without it.
    try:
        import timm
    except ImportError:
        raise MissingExtraError(f"the timm models need timm: pip install -r {TIMM_REQUIREMENTS}") from None
    return timm


def timm_kwargs(spec: ModelSpec, in_channels: int, num_classes: int, image_size: int) -> dict[str, Any]:
    """The keyword arguments ``timm.create_model`` gets for this model at this input size (see the module doc)."""
    kwargs: dict[str, Any] = dict(spec.kwargs, in_chans=in_channels, num_classes=num_classes)
    small = image_size < SMALL_INPUT_BELOW
    if spec.family == "vit":
        kwargs.update(img_size=image_size, patch_size=image_size // 8 if small else 16)
    elif spec.family == "swin":
        kwargs.update(img_size=image_size)
        if small:
            kwargs.update(patch_size=image_size // 16, window_size=4)
    return kwargs


def make_classifier(name: str, in_channels: int, num_classes: int, image_size: int = 32, **overrides: Any) -> nn.Module:
    """The network for ``--model``, mapping [N, in_channels, image_size, image_size] to logits [N, num_classes].

    Its initial weights depend only on torch's RNG state at the call. ``overrides`` are extra timm kwargs (tests use
    them to shrink a model: ``embed_dim=32, depth=1``); they win over the spec's. Never downloads anything.
    """
    spec = MODELS.get(name)
    if spec is None:
        raise ValueError(f"unknown --model {name!r}; choose one of {', '.join(MODEL_NAMES)}")
    if spec.timm_name is None:
        return SmallCNN(in_channels, num_classes)
    timm = _timm()
    net = timm.create_model(
        spec.timm_name, pretrained=False, **dict(timm_kwargs(spec, in_channels, num_classes, image_size), **overrides)
    )
    if spec.family == "resnet" and image_size < SMALL_INPUT_BELOW:
        net.conv1 = nn.Conv2d(
            in_channels, net.conv1.out_channels, kernel_size=3, stride=spec.stem_stride, padding=1, bias=False
        )
        net.maxpool = nn.Identity()
    return net


def parameter_count(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


# ---------------------------------------------------------------------------------------------------- pretrained


def classifier_keys(net: nn.Module) -> tuple[str, ...]:
    """State-dict keys of the classification head (re-initialised when fine-tuning for other classes)."""
    if isinstance(net, SmallCNN):
        return ("head.weight", "head.bias")
    head = net.pretrained_cfg.get("classifier", "fc") if hasattr(net, "pretrained_cfg") else "fc"
    return tuple(key for key in net.state_dict() if key.startswith(head + "."))


def reader_error(err: BaseException) -> str:
    """One line about why torch.load or safetensors refused a file. torch's own advice to retry with
    weights_only=False (which would run code from the file) is never passed on."""
    first = (str(err).strip().splitlines() or [""])[0]
    if "weights_only" in str(err) or "Weights only load failed" in first:
        return f"{type(err).__name__}: not a file of tensors only, or damaged; it is never loaded as code"
    return f"{type(err).__name__}: {first[:200]}"


def read_state_dict(path: str) -> dict[str, torch.Tensor]:
    """Tensors of a timm/torchvision checkpoint: ``.safetensors`` via safetensors, else ``torch.load`` with
    ``weights_only=True`` (no code runs). Unwraps ``{'state_dict'|'model'|'model_state': ...}`` and the ``module.``
    prefix of DataParallel/DDP saves."""
    if not os.path.isfile(path):
        raise PretrainedError(
            f"--pretrained: no such file {path!r} (a timm or torchvision checkpoint: .pth, .bin "
            f"or .safetensors; nothing is downloaded)"
        )
    try:
        if path.endswith(".safetensors"):
            # Deferred: a timm dependency, so absent without requirements-extras.txt; only .safetensors files need it.
            from safetensors.torch import load_file

            state = load_file(path, device="cpu")
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 -- any reader failure is one message naming the file
        raise PretrainedError(f"--pretrained {path}: cannot read it as a checkpoint ({reader_error(err)})") from None
    for key in ("state_dict", "model", "model_state", "net"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise PretrainedError(f"--pretrained {path}: expected a dict of tensors (a state_dict)")
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}
    return state


def load_pretrained(net: nn.Module, path: str, model_name: str) -> str:
    """Copy a pretrained file's weights into ``net`` (built by :func:`make_classifier` for ``model_name``), all but
    the classification head, which keeps its fresh initialisation for the new number of classes. Returns the line to
    announce. Missing or unexpected keys, or a shape mismatch, raise PretrainedError naming the file and the model."""
    state = read_state_dict(path)
    head = set(classifier_keys(net))
    own = {k: v for k, v in net.state_dict().items() if k not in head}
    given = {k: v for k, v in state.items() if k not in head}
    missing = sorted(set(own) - set(given))
    unexpected = sorted(set(given) - set(own))
    shapes = sorted(
        f"{k}: file {list(given[k].shape)} vs model {list(own[k].shape)}"
        for k in set(own) & set(given)
        if given[k].shape != own[k].shape
    )
    if missing or unexpected or shapes:

        def first(items):
            return ", ".join(items[:5]) + (f" (+{len(items) - 5} more)" if len(items) > 5 else "")

        problems = [
            f"{len(missing)} missing keys: {first(missing)}" if missing else "",
            f"{len(unexpected)} unexpected keys: {first(unexpected)}" if unexpected else "",
            f"{len(shapes)} shape mismatches: {first(shapes)}" if shapes else "",
        ]
        spec = MODELS[model_name]
        raise PretrainedError(
            f"--pretrained {path} does not fit --model {model_name} (timm {spec.timm_name}, "
            f"{type(net).__name__}): {'; '.join(p for p in problems if p)}. Pass a checkpoint of "
            f"{spec.timm_name} (a 224 px ImageNet file needs --image-size 224)"
        )
    net.load_state_dict(dict(given, **{k: v for k, v in net.state_dict().items() if k in head}))
    out_features = getattr(net.get_classifier(), "out_features", "?") if hasattr(net, "get_classifier") else "?"
    return (
        f"loaded {len(given)} tensors from {path} into {model_name}; classifier head "
        f"({', '.join(sorted(head))}) re-initialised for {out_features} classes"
    )
