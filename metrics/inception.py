"""Inception-v3 as used for FID/KID/IS: the TensorFlow graph of 2015-12-05, re-implemented in PyTorch.

This graph differs from torchvision's Inception-v3 in ways that move FID: 1008 output classes, average pools
that ignore padding, and a max pool (not an average pool) in the last block. Parameter names follow
StyleGAN2-ADA's detector file (`layers.mixed_4.tower_1.conv_2.weight`, batch norm as `beta/mean/var`
without a scale), so that file loads by name; pytorch-fid's state dict is mapped onto the same names.

Input: NCHW images with values in [0, 255] (uint8 or float), any size; they are resized to 299x299 like TF1.
"""

from __future__ import annotations

import collections
from collections.abc import Mapping

import torch
import torch.nn.functional as F

from metrics.tf_resize import resize_like_tf1
from metrics.weight_files import DetectorFormatError, check_state_dict, is_torchscript_archive, read_weight_file

FEATURE_DIM = 2048
NUM_CLASSES = 1008
INPUT_SIZE = 299
BN_EPS = 1e-3


class ConvBNReLU(torch.nn.Module):
    """Convolution (no bias), batch norm with a shift but no scale (as in the TF graph), ReLU."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel: int | tuple[int, int],
        stride: int = 1,
        padding: int | tuple[int, int] = 0,
    ):
        super().__init__()
        kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
        self.stride = stride
        self.padding = padding
        self.weight = torch.nn.Parameter(torch.zeros([out_channels, in_channels, kh, kw]))
        self.beta = torch.nn.Parameter(torch.zeros([out_channels]))
        self.mean = torch.nn.Parameter(torch.zeros([out_channels]))
        self.var = torch.nn.Parameter(torch.ones([out_channels]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.conv2d(x, self.weight.to(x.dtype), stride=self.stride, padding=self.padding)
        x = F.batch_norm(
            x, self.mean.to(x.dtype), self.var.to(x.dtype), None, self.beta.to(x.dtype), training=False, eps=BN_EPS
        )
        return F.relu(x)


def _seq(*named: tuple[str, torch.nn.Module]) -> torch.nn.Sequential:
    return torch.nn.Sequential(collections.OrderedDict(named))


def _avg_pool_3x3() -> torch.nn.Module:
    # TF's SAME average pool divides by the number of real (unpadded) pixels.
    return torch.nn.AvgPool2d(kernel_size=3, stride=1, padding=1, count_include_pad=False)


class InceptionA(torch.nn.Module):
    """35x35 block (TF 'mixed', 'mixed_1', 'mixed_2')."""

    def __init__(self, in_channels: int, pool_channels: int):
        super().__init__()
        self.conv = ConvBNReLU(in_channels, 64, 1)
        self.tower = _seq(("conv", ConvBNReLU(in_channels, 48, 1)), ("conv_1", ConvBNReLU(48, 64, 5, padding=2)))
        self.tower_1 = _seq(
            ("conv", ConvBNReLU(in_channels, 64, 1)),
            ("conv_1", ConvBNReLU(64, 96, 3, padding=1)),
            ("conv_2", ConvBNReLU(96, 96, 3, padding=1)),
        )
        self.tower_2 = _seq(("pool", _avg_pool_3x3()), ("conv", ConvBNReLU(in_channels, pool_channels, 1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.conv(x), self.tower(x), self.tower_1(x), self.tower_2(x)], dim=1)


class InceptionB(torch.nn.Module):
    """Grid reduction 35 -> 17 (TF 'mixed_3')."""

    def __init__(self, in_channels: int):
        super().__init__()
        self.conv = ConvBNReLU(in_channels, 384, 3, stride=2)
        self.tower = _seq(
            ("conv", ConvBNReLU(in_channels, 64, 1)),
            ("conv_1", ConvBNReLU(64, 96, 3, padding=1)),
            ("conv_2", ConvBNReLU(96, 96, 3, stride=2)),
        )
        self.pool = torch.nn.MaxPool2d(kernel_size=3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.conv(x), self.tower(x), self.pool(x)], dim=1)


class InceptionC(torch.nn.Module):
    """17x17 block with factorised 7x7 convolutions (TF 'mixed_4' .. 'mixed_7')."""

    def __init__(self, in_channels: int, mid: int):
        super().__init__()
        self.conv = ConvBNReLU(in_channels, 192, 1)
        self.tower = _seq(
            ("conv", ConvBNReLU(in_channels, mid, 1)),
            ("conv_1", ConvBNReLU(mid, mid, (1, 7), padding=(0, 3))),
            ("conv_2", ConvBNReLU(mid, 192, (7, 1), padding=(3, 0))),
        )
        self.tower_1 = _seq(
            ("conv", ConvBNReLU(in_channels, mid, 1)),
            ("conv_1", ConvBNReLU(mid, mid, (7, 1), padding=(3, 0))),
            ("conv_2", ConvBNReLU(mid, mid, (1, 7), padding=(0, 3))),
            ("conv_3", ConvBNReLU(mid, mid, (7, 1), padding=(3, 0))),
            ("conv_4", ConvBNReLU(mid, 192, (1, 7), padding=(0, 3))),
        )
        self.tower_2 = _seq(("pool", _avg_pool_3x3()), ("conv", ConvBNReLU(in_channels, 192, 1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.conv(x), self.tower(x), self.tower_1(x), self.tower_2(x)], dim=1)


class InceptionD(torch.nn.Module):
    """Grid reduction 17 -> 8 (TF 'mixed_8')."""

    def __init__(self, in_channels: int):
        super().__init__()
        self.tower = _seq(("conv", ConvBNReLU(in_channels, 192, 1)), ("conv_1", ConvBNReLU(192, 320, 3, stride=2)))
        self.tower_1 = _seq(
            ("conv", ConvBNReLU(in_channels, 192, 1)),
            ("conv_1", ConvBNReLU(192, 192, (1, 7), padding=(0, 3))),
            ("conv_2", ConvBNReLU(192, 192, (7, 1), padding=(3, 0))),
            ("conv_3", ConvBNReLU(192, 192, 3, stride=2)),
        )
        self.pool = torch.nn.MaxPool2d(kernel_size=3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.tower(x), self.tower_1(x), self.pool(x)], dim=1)


class InceptionE(torch.nn.Module):
    """8x8 block with split 1x3/3x1 branches (TF 'mixed_9' with an average pool, 'mixed_10' with a max pool)."""

    def __init__(self, in_channels: int, pool: str):
        super().__init__()
        if pool not in ("avg", "max"):
            raise ValueError(f"pool must be 'avg' or 'max', got {pool!r}")
        self.conv = ConvBNReLU(in_channels, 320, 1)
        self.tower_conv = ConvBNReLU(in_channels, 384, 1)
        self.tower_mixed_conv = ConvBNReLU(384, 384, (1, 3), padding=(0, 1))
        self.tower_mixed_conv_1 = ConvBNReLU(384, 384, (3, 1), padding=(1, 0))
        self.tower_1_conv = ConvBNReLU(in_channels, 448, 1)
        self.tower_1_conv_1 = ConvBNReLU(448, 384, 3, padding=1)
        self.tower_1_mixed_conv = ConvBNReLU(384, 384, (1, 3), padding=(0, 1))
        self.tower_1_mixed_conv_1 = ConvBNReLU(384, 384, (3, 1), padding=(1, 0))
        # The 2015 graph max-pools in its last block; torchvision (and the paper) average-pool there.
        self.tower_2_pool = _avg_pool_3x3() if pool == "avg" else torch.nn.MaxPool2d(kernel_size=3, stride=1, padding=1)
        self.tower_2_conv = ConvBNReLU(in_channels, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.tower_conv(x)
        b = self.tower_1_conv_1(self.tower_1_conv(x))
        return torch.cat(
            [
                self.conv(x),
                self.tower_mixed_conv(a),
                self.tower_mixed_conv_1(a),
                self.tower_1_mixed_conv(b),
                self.tower_1_mixed_conv_1(b),
                self.tower_2_conv(self.tower_2_pool(x)),
            ],
            dim=1,
        )


class InceptionV3(torch.nn.Module):
    """The FID Inception network; call it like StyleGAN2-ADA's detector.

    forward(img [N, 3, H, W] in [0, 255]) -> softmax probabilities [N, 1008];
    return_features=True -> pool_3 features [N, 2048] (float32); no_output_bias=True drops the softmax bias
    (the original Inception Score code does this).
    """

    def __init__(self):
        super().__init__()
        self.layers = _seq(
            ("conv", ConvBNReLU(3, 32, 3, stride=2)),
            ("conv_1", ConvBNReLU(32, 32, 3)),
            ("conv_2", ConvBNReLU(32, 64, 3, padding=1)),
            ("pool0", torch.nn.MaxPool2d(kernel_size=3, stride=2)),
            ("conv_3", ConvBNReLU(64, 80, 1)),
            ("conv_4", ConvBNReLU(80, 192, 3)),
            ("pool1", torch.nn.MaxPool2d(kernel_size=3, stride=2)),
            ("mixed", InceptionA(192, 32)),
            ("mixed_1", InceptionA(256, 64)),
            ("mixed_2", InceptionA(288, 64)),
            ("mixed_3", InceptionB(288)),
            ("mixed_4", InceptionC(768, 128)),
            ("mixed_5", InceptionC(768, 160)),
            ("mixed_6", InceptionC(768, 160)),
            ("mixed_7", InceptionC(768, 192)),
            ("mixed_8", InceptionD(768)),
            ("mixed_9", InceptionE(1280, pool="avg")),
            ("mixed_10", InceptionE(2048, pool="max")),
        )
        self.output = torch.nn.Linear(FEATURE_DIM, NUM_CLASSES)

    def preprocess(self, img: torch.Tensor, use_fp16: bool = False) -> torch.Tensor:
        """[N, 3, H, W] in [0, 255] -> [N, 3, 299, 299] in [-1, 1), as the TF graph's ResizeBilinear/Sub/Mul."""
        if img.ndim != 4 or img.shape[1] != 3:
            raise ValueError(f"Inception expects images [N, 3, H, W], got {list(img.shape)}")
        x = img.to(torch.float16 if use_fp16 else torch.float32)
        x = resize_like_tf1(x, INPUT_SIZE, INPUT_SIZE)
        return (x - 128) / 128

    def forward(
        self, img: torch.Tensor, return_features: bool = False, use_fp16: bool = False, no_output_bias: bool = False
    ) -> torch.Tensor:
        x = self.layers(self.preprocess(img, use_fp16=use_fp16))
        features = x.mean(dim=[2, 3]).to(torch.float32)  # the graph's 8x8 average pool ('pool_3')
        if return_features:
            return features
        bias = None if no_output_bias else self.output.bias
        return torch.softmax(F.linear(features, self.output.weight, bias), dim=1)


# ----------------------------------------------------------------------------
# pytorch-fid's state dict (torchvision Inception3 names, FID blocks patched in, no AuxLogits).

_TV_STEM = {
    "Conv2d_1a_3x3": "layers.conv",
    "Conv2d_2a_3x3": "layers.conv_1",
    "Conv2d_2b_3x3": "layers.conv_2",
    "Conv2d_3b_1x1": "layers.conv_3",
    "Conv2d_4a_3x3": "layers.conv_4",
}
_TV_BLOCK_A = {
    "branch1x1": "conv",
    "branch5x5_1": "tower.conv",
    "branch5x5_2": "tower.conv_1",
    "branch3x3dbl_1": "tower_1.conv",
    "branch3x3dbl_2": "tower_1.conv_1",
    "branch3x3dbl_3": "tower_1.conv_2",
    "branch_pool": "tower_2.conv",
}
_TV_BLOCK_B = {
    "branch3x3": "conv",
    "branch3x3dbl_1": "tower.conv",
    "branch3x3dbl_2": "tower.conv_1",
    "branch3x3dbl_3": "tower.conv_2",
}
_TV_BLOCK_C = {
    "branch1x1": "conv",
    "branch7x7_1": "tower.conv",
    "branch7x7_2": "tower.conv_1",
    "branch7x7_3": "tower.conv_2",
    "branch7x7dbl_1": "tower_1.conv",
    "branch7x7dbl_2": "tower_1.conv_1",
    "branch7x7dbl_3": "tower_1.conv_2",
    "branch7x7dbl_4": "tower_1.conv_3",
    "branch7x7dbl_5": "tower_1.conv_4",
    "branch_pool": "tower_2.conv",
}
_TV_BLOCK_D = {
    "branch3x3_1": "tower.conv",
    "branch3x3_2": "tower.conv_1",
    "branch7x7x3_1": "tower_1.conv",
    "branch7x7x3_2": "tower_1.conv_1",
    "branch7x7x3_3": "tower_1.conv_2",
    "branch7x7x3_4": "tower_1.conv_3",
}
_TV_BLOCK_E = {
    "branch1x1": "conv",
    "branch3x3_1": "tower_conv",
    "branch3x3_2a": "tower_mixed_conv",
    "branch3x3_2b": "tower_mixed_conv_1",
    "branch3x3dbl_1": "tower_1_conv",
    "branch3x3dbl_2": "tower_1_conv_1",
    "branch3x3dbl_3a": "tower_1_mixed_conv",
    "branch3x3dbl_3b": "tower_1_mixed_conv_1",
    "branch_pool": "tower_2_conv",
}
_TV_BLOCKS = {
    "Mixed_5b": ("mixed", _TV_BLOCK_A),
    "Mixed_5c": ("mixed_1", _TV_BLOCK_A),
    "Mixed_5d": ("mixed_2", _TV_BLOCK_A),
    "Mixed_6a": ("mixed_3", _TV_BLOCK_B),
    "Mixed_6b": ("mixed_4", _TV_BLOCK_C),
    "Mixed_6c": ("mixed_5", _TV_BLOCK_C),
    "Mixed_6d": ("mixed_6", _TV_BLOCK_C),
    "Mixed_6e": ("mixed_7", _TV_BLOCK_C),
    "Mixed_7a": ("mixed_8", _TV_BLOCK_D),
    "Mixed_7b": ("mixed_9", _TV_BLOCK_E),
    "Mixed_7c": ("mixed_10", _TV_BLOCK_E),
}


def torchvision_conv_names() -> dict[str, str]:
    """{torchvision BasicConv2d prefix: our ConvBNReLU prefix} for all 94 convolutions."""
    names = dict(_TV_STEM)
    for tv_block, (ours, table) in _TV_BLOCKS.items():
        names.update({f"{tv_block}.{tv}": f"layers.{ours}.{our}" for tv, our in table.items()})
    return names


def pytorch_fid_expected_shapes() -> tuple[dict[str, tuple[int, ...]], set[str]]:
    """Names and shapes in pytorch-fid's pt_inception-2015-12-05-6726825d.pth, and the optional names."""
    ours = {name: tuple(t.shape) for name, t in InceptionV3().state_dict().items()}
    expected: dict[str, tuple[int, ...]] = {}
    optional: set[str] = set()
    for tv, our in torchvision_conv_names().items():
        out_channels = ours[f"{our}.beta"][0]
        expected[f"{tv}.conv.weight"] = ours[f"{our}.weight"]
        for field in ("weight", "bias", "running_mean", "running_var"):
            expected[f"{tv}.bn.{field}"] = (out_channels,)
        optional.add(f"{tv}.bn.num_batches_tracked")  # present or not depending on the torch that saved it
    expected["fc.weight"] = ours["output.weight"]
    expected["fc.bias"] = ours["output.bias"]
    return expected, optional


def convert_pytorch_fid_state(state: Mapping[str, torch.Tensor], source: str) -> dict[str, torch.Tensor]:
    """pytorch-fid state dict -> our names. The BN scale (gamma) is folded exactly into weight and mean."""
    expected, optional = pytorch_fid_expected_shapes()
    check_state_dict(expected, state, source, optional=optional)
    out: dict[str, torch.Tensor] = {}
    for tv, our in torchvision_conv_names().items():
        gamma = state[f"{tv}.bn.weight"].to(torch.float32)
        # gamma * (y - m) / s + b == (gamma*y - gamma*m) / s + b: scale the conv output and the mean by gamma.
        out[f"{our}.weight"] = state[f"{tv}.conv.weight"].to(torch.float32) * gamma[:, None, None, None]
        out[f"{our}.mean"] = state[f"{tv}.bn.running_mean"].to(torch.float32) * gamma
        out[f"{our}.var"] = state[f"{tv}.bn.running_var"].to(torch.float32)
        out[f"{our}.beta"] = state[f"{tv}.bn.bias"].to(torch.float32)
    out["output.weight"] = state["fc.weight"].to(torch.float32)
    out["output.bias"] = state["fc.bias"].to(torch.float32)
    return out


def load_inception_state(path: str) -> dict[str, torch.Tensor]:
    """Our-named float32 state dict from StyleGAN2-ADA's inception-2015-12-05.pt or pytorch-fid's .pth."""
    state = read_weight_file(path)
    if is_torchscript_archive(path):
        expected = {name: tuple(t.shape) for name, t in InceptionV3().state_dict().items()}
        check_state_dict(expected, state, path)
        return {name: t.to(torch.float32) for name, t in state.items()}
    if "fc.weight" in state or "Conv2d_1a_3x3.conv.weight" in state:
        return convert_pytorch_fid_state(state, path)
    raise DetectorFormatError(
        f"{path}: neither StyleGAN2-ADA's inception-2015-12-05.pt (TorchScript) nor "
        f"pytorch-fid's pt_inception-2015-12-05-*.pth state dict "
        f"(first keys: {', '.join(list(state)[:4])})"
    )


def build_inception(path: str, device: torch.device | str = "cpu") -> InceptionV3:
    """InceptionV3 with the weights in `path`, in eval mode, frozen, on `device`."""
    state = load_inception_state(path)
    with torch.device("meta"):
        model = InceptionV3()
    model.load_state_dict({k: v.contiguous() for k, v in state.items()}, strict=True, assign=True)
    return model.eval().requires_grad_(False).to(device)
