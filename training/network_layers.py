"""Building blocks shared by the generator and the discriminator (StyleGAN2-ADA layer semantics).

Weights are stored unscaled (N(0, 1) at init) and multiplied by a constant gain at run time
("equalized learning rate"), exactly as the official code does, so official state_dicts load as-is.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from torch_utils import misc
from torch_utils.ops import bias_act, conv2d_resample, fma, upfirdn2d

FIR_FILTER: list[int] = [1, 3, 3, 1]


def compute_dtype(use_fp16: bool, force_fp32: bool, device: torch.device | str) -> torch.dtype:
    """Activation dtype of a block that was built with `use_fp16`.

    float16 only pays (and is only well supported) on CUDA; on CPU an fp16 block runs in float32
    instead of failing or crawling, so one set of kwargs serves both devices.
    """
    if use_fp16 and not force_fp32 and torch.device(device).type == "cuda":
        return torch.float16
    return torch.float32


# oneDNN (PyTorch's CPU conv backend) runs NHWC convs and depthwise FIR filters faster than NCHW once a
# layer's batch * height * width is this large; below it the layout conversions cost more than they save.
CPU_CHANNELS_LAST_MIN_PIXELS = 4096


def compute_memory_format(
    channels_last: bool, dtype: torch.dtype, device: torch.device | str, num_pixels: int
) -> torch.memory_format:
    """Activation layout of a block whose layers see `num_pixels` = batch * height * width.

    CUDA follows the official rule (channels_last only for fp16 blocks built with fp16_channels_last);
    CPU picks the faster layout by size, whatever the flag says (both layouts give the same values).
    """
    if torch.device(device).type == "cpu":
        return torch.channels_last if num_pixels >= CPU_CHANNELS_LAST_MIN_PIXELS else torch.contiguous_format
    if channels_last and dtype == torch.float16:
        return torch.channels_last
    return torch.contiguous_format


def default_fused_modconv(training: bool, dtype: torch.dtype, batch_size: int, device: torch.device | str) -> bool:
    """Whether modulated convs use per-sample weights in one grouped conv when the caller does not say.

    CUDA: the official rule (fused for fp32 inference or a batch of one). CPU: never, since oneDNN's
    grouped convs with per-sample weights are ~3x slower there than one shared-weight conv with the
    activations scaled before and after (measured at batch 1 and 16, cifar config).
    """
    if torch.device(device).type == "cpu":
        return False
    return (not training) and (dtype == torch.float32 or batch_size == 1)


def normalize_2nd_moment(x: torch.Tensor, dim: int = 1, eps: float = 1e-8) -> torch.Tensor:
    """Scale each vector along `dim` to unit root-mean-square."""
    return x * (x.square().mean(dim=dim, keepdim=True) + eps).rsqrt()


def modulated_conv2d(
    x: torch.Tensor,  # [N, I, H, W] input activations
    weight: torch.Tensor,  # [O, I, kh, kw] shared (unscaled) weight
    styles: torch.Tensor,  # [N, I] per-sample input-channel scales
    noise: torch.Tensor | None = None,  # broadcastable to [N, O, H', W'], added after demodulation
    up: int = 1,
    down: int = 1,
    padding: int = 0,
    resample_filter: torch.Tensor | None = None,
    demodulate: bool = True,
    flip_weight: bool = True,
    fused_modconv: bool = True,
) -> torch.Tensor:
    """StyleGAN2 weight (de)modulation: conv with weight[o, i] * styles[n, i] * dcoef[n, o].

    fused_modconv=True builds per-sample weights and runs one grouped convolution (groups = N);
    False scales the activations before and after a single shared-weight convolution instead.
    Both compute the same function; which is faster depends on batch size and device.
    """
    batch_size = x.shape[0]
    out_channels, in_channels, kh, kw = weight.shape
    misc.assert_shape(weight, [out_channels, in_channels, kh, kw])
    misc.assert_shape(x, [batch_size, in_channels, None, None])
    misc.assert_shape(styles, [batch_size, in_channels])

    # fp16 would overflow in the sums of squares: pre-normalise weight and styles (demodulation
    # removes the scale again).
    if x.dtype == torch.float16 and demodulate:
        weight = weight * (1 / np.sqrt(in_channels * kh * kw) / weight.norm(float("inf"), dim=[1, 2, 3], keepdim=True))
        styles = styles / styles.norm(float("inf"), dim=1, keepdim=True)

    dcoefs = None
    if demodulate:
        # sum_{i,k} (W[o,i,k] s[n,i])^2 = s^2 @ (sum_k W^2)^T, without building [N, O, I, kh, kw].
        dcoefs = (styles.square() @ weight.square().sum(dim=[2, 3]).t() + 1e-8).rsqrt()  # [N, O]

    if not fused_modconv:
        x = x * styles.to(x.dtype).reshape(batch_size, -1, 1, 1)
        x = conv2d_resample.conv2d_resample(
            x=x, w=weight.to(x.dtype), f=resample_filter, up=up, down=down, padding=padding, flip_weight=flip_weight
        )
        if demodulate and noise is not None:
            x = fma.fma(x, dcoefs.to(x.dtype).reshape(batch_size, -1, 1, 1), noise.to(x.dtype))
        elif demodulate:
            x = x * dcoefs.to(x.dtype).reshape(batch_size, -1, 1, 1)
        elif noise is not None:
            x = x + noise.to(x.dtype)
        return x

    # Fused: one grouped convolution with per-sample weights.
    w = weight.unsqueeze(0) * styles.reshape(batch_size, 1, -1, 1, 1)  # [N, O, I, kh, kw]
    if demodulate:
        w = w * dcoefs.reshape(batch_size, -1, 1, 1, 1)
    with misc.suppress_tracer_warnings():  # batch size becomes a constant when tracing
        batch_size = int(batch_size)
    x = x.reshape(1, -1, *x.shape[2:])
    w = w.reshape(-1, in_channels, kh, kw)
    x = conv2d_resample.conv2d_resample(
        x=x,
        w=w.to(x.dtype),
        f=resample_filter,
        up=up,
        down=down,
        padding=padding,
        groups=batch_size,
        flip_weight=flip_weight,
    )
    x = x.reshape(batch_size, -1, *x.shape[2:])
    if noise is not None:
        x = x + noise.to(x.dtype)
    return x


class FullyConnectedLayer(torch.nn.Module):
    """Dense layer with equalized learning rate; `lr_multiplier` slows it down (mapping network)."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        activation: str = "linear",
        lr_multiplier: float = 1,
        bias_init: float = 0,
    ):
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.activation = activation
        self.weight = torch.nn.Parameter(torch.randn([out_features, in_features]) / lr_multiplier)
        self.bias = torch.nn.Parameter(torch.full([out_features], np.float32(bias_init))) if bias else None
        self.weight_gain = lr_multiplier / np.sqrt(in_features)
        self.bias_gain = lr_multiplier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[N, in_features] -> [N, out_features]."""
        w = self.weight.to(x.dtype) * self.weight_gain
        b = self.bias
        if b is not None:
            b = b.to(x.dtype)
            if self.bias_gain != 1:
                b = b * self.bias_gain
        if self.activation == "linear" and b is not None:
            return torch.addmm(b.unsqueeze(0), x, w.t())
        x = x.matmul(w.t())
        return bias_act.bias_act(x, b, act=self.activation)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, activation={self.activation}"


class Conv2dLayer(torch.nn.Module):
    """Conv with equalized learning rate, optional FIR up/down-sampling, bias, activation and clamp."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        bias: bool = True,
        activation: str = "linear",
        up: int = 1,
        down: int = 1,
        resample_filter: Sequence[int] = FIR_FILTER,
        conv_clamp: float | None = None,
        channels_last: bool = False,
        trainable: bool = True,
    ):
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.activation = activation
        self.up = up
        self.down = down
        self.conv_clamp = conv_clamp
        self.register_buffer("resample_filter", upfirdn2d.setup_filter(list(resample_filter)))
        self.padding = kernel_size // 2
        self.weight_gain = 1 / np.sqrt(in_channels * (kernel_size**2))
        self.act_gain = bias_act.activation_funcs[activation].def_gain

        memory_format = torch.channels_last if channels_last else torch.contiguous_format
        weight = torch.randn([out_channels, in_channels, kernel_size, kernel_size]).to(memory_format=memory_format)
        bias_tensor = torch.zeros([out_channels]) if bias else None
        if trainable:
            self.weight = torch.nn.Parameter(weight)
            self.bias = torch.nn.Parameter(bias_tensor) if bias_tensor is not None else None
        else:
            # Frozen layers (freeze_layers / freezeD) keep their values as buffers: same state_dict keys.
            self.register_buffer("weight", weight)
            if bias_tensor is not None:
                self.register_buffer("bias", bias_tensor)
            else:
                self.bias = None

    def forward(self, x: torch.Tensor, gain: float = 1) -> torch.Tensor:
        """[N, in_channels, H, W] -> [N, out_channels, H * up / down, W * up / down]."""
        w = self.weight * self.weight_gain
        b = self.bias.to(x.dtype) if self.bias is not None else None
        flip_weight = self.up == 1  # either is correct; this choice is the faster one
        x = conv2d_resample.conv2d_resample(
            x=x,
            w=w.to(x.dtype),
            f=self.resample_filter,
            up=self.up,
            down=self.down,
            padding=self.padding,
            flip_weight=flip_weight,
        )
        act_gain = self.act_gain * gain
        act_clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        return bias_act.bias_act(x, b, act=self.activation, gain=act_gain, clamp=act_clamp)

    def extra_repr(self) -> str:
        return (
            f"in_channels={self.in_channels}, out_channels={self.out_channels}, activation={self.activation}, "
            f"up={self.up}, down={self.down}"
        )
