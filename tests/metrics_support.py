"""Test helpers for the metrics: detector files with random weights in the real formats, independent reference
networks (torchvision's Inception-v3 patched to the FID graph, torchvision's VGG16), tiny generators and datasets.
"""

from __future__ import annotations

import atexit
import collections
import functools
import os
import shutil
import tempfile

import numpy as np
import PIL.Image
import torch
import torch.nn.functional as F
import torchvision

# ----------------------------------------------------------------------------
# Inception: pytorch-fid layout built from torchvision (the oracle), random weights.


def _fid_pool(x: torch.Tensor, kind: str) -> torch.Tensor:
    if kind == "max":
        return F.max_pool2d(x, kernel_size=3, stride=1, padding=1)
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)


class _FidA(torchvision.models.inception.InceptionA):
    def _forward(self, x):
        b5 = self.branch5x5_2(self.branch5x5_1(x))
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return [self.branch1x1(x), b5, b3, self.branch_pool(_fid_pool(x, "avg"))]


class _FidC(torchvision.models.inception.InceptionC):
    def _forward(self, x):
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        d = x
        for layer in (
            self.branch7x7dbl_1,
            self.branch7x7dbl_2,
            self.branch7x7dbl_3,
            self.branch7x7dbl_4,
            self.branch7x7dbl_5,
        ):
            d = layer(d)
        return [self.branch1x1(x), b7, d, self.branch_pool(_fid_pool(x, "avg"))]


class _FidE(torchvision.models.inception.InceptionE):
    pool_kind = "avg"

    def _forward(self, x):
        b3 = self.branch3x3_1(x)
        b3 = torch.cat([self.branch3x3_2a(b3), self.branch3x3_2b(b3)], 1)
        d = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        d = torch.cat([self.branch3x3dbl_3a(d), self.branch3x3dbl_3b(d)], 1)
        return [self.branch1x1(x), b3, d, self.branch_pool(_fid_pool(x, self.pool_kind))]


class _FidEMax(_FidE):
    pool_kind = "max"


def torchvision_fid_inception() -> torchvision.models.Inception3:
    """torchvision Inception3 with pytorch-fid's FID patches (1008 classes, no aux head, TF pooling)."""
    model = torchvision.models.inception_v3(weights=None, aux_logits=False, num_classes=1008, init_weights=False)
    model.Mixed_5b, model.Mixed_5c, model.Mixed_5d = _FidA(192, 32), _FidA(256, 64), _FidA(288, 64)
    model.Mixed_6b, model.Mixed_6c = _FidC(768, 128), _FidC(768, 160)
    model.Mixed_6d, model.Mixed_6e = _FidC(768, 160), _FidC(768, 192)
    model.Mixed_7b, model.Mixed_7c = _FidE(1280), _FidEMax(2048)
    return model.eval()


def random_pytorch_fid_state(seed: int = 0, with_num_batches_tracked: bool = True) -> dict[str, torch.Tensor]:
    """A random state dict with exactly the names/shapes of torchvision_fid_inception() (== pytorch-fid's file).

    Conv weights are He-scaled and BN statistics/scales are non-trivial (gamma != 1 checks the gamma folding).
    """
    gen = torch.Generator().manual_seed(seed)
    state = collections.OrderedDict()
    for name, ref in torchvision_fid_inception().state_dict().items():
        shape = ref.shape
        if name.endswith("num_batches_tracked"):
            if with_num_batches_tracked:
                state[name] = torch.tensor(0)
            continue
        if name.endswith("conv.weight"):
            fan_in = shape[1] * shape[2] * shape[3]
            value = torch.randn(shape, generator=gen) * (2.0 / fan_in) ** 0.5
        elif name.endswith("bn.weight"):
            value = 0.5 + torch.rand(shape, generator=gen)
        elif name.endswith("bn.bias") or name.endswith("running_mean"):
            value = 0.1 * torch.randn(shape, generator=gen)
        elif name.endswith("running_var"):
            value = 0.5 + torch.rand(shape, generator=gen)
        elif name == "fc.weight":
            value = torch.randn(shape, generator=gen) / shape[1] ** 0.5
        else:
            value = 0.1 * torch.randn(shape, generator=gen)
        state[name] = value
    return state


def save_pytorch_fid_file(folder: str, seed: int = 0) -> tuple[str, dict[str, torch.Tensor]]:
    """Write <folder>/pt_inception-2015-12-05-6726825d.pth (random weights) and return (path, state)."""
    state = random_pytorch_fid_state(seed)
    path = os.path.join(folder, "pt_inception-2015-12-05-6726825d.pth")
    torch.save(state, path)
    return path, state


@functools.cache
def shared_dir() -> str:
    """A temporary folder shared by all metrics tests of this process (big random weight files are made once)."""
    path = tempfile.mkdtemp(prefix="rlo-metrics-tests-")
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


@functools.cache
def shared_fid_file() -> tuple[str, dict[str, torch.Tensor]]:
    """(path, state) of a random pytorch-fid Inception file in detector folder shared_dir()/fid."""
    folder = os.path.join(shared_dir(), "fid")
    os.makedirs(folder, exist_ok=True)
    return save_pytorch_fid_file(folder)


@functools.cache
def shared_vgg_files() -> tuple[str, str, dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """(vgg16 path, lpips path, states) of random torchvision VGG16 + LPIPS files in shared_dir()/vgg."""
    folder = os.path.join(shared_dir(), "vgg")
    os.makedirs(folder, exist_ok=True)
    vgg_state, lpips_state = random_torchvision_vgg16_state(), random_lpips_state()
    torch.save(vgg_state, os.path.join(folder, "vgg16-397923af.pth"))
    torch.save(lpips_state, os.path.join(folder, "vgg.pth"))
    return os.path.join(folder, "vgg16-397923af.pth"), os.path.join(folder, "vgg.pth"), vgg_state, lpips_state


def save_torchscript(module: torch.nn.Module, example: torch.Tensor, path: str) -> None:
    """A TorchScript archive of `module` (traced), the container StyleGAN2-ADA's detectors come in."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(module.eval(), example, check_trace=False)
        traced.save(path)


# ----------------------------------------------------------------------------
# VGG16: torchvision layout (the oracle) and LPIPS lin weights, random.


def random_torchvision_vgg16_state(seed: int = 0) -> dict[str, torch.Tensor]:
    """Random weights with torchvision vgg16's exact names and shapes.

    The three big fully connected matrices are stored as strided views of a small random vector (a shifted-window
    matrix), so the file stays small while every entry is still random-looking and the shapes are exact.
    """
    gen = torch.Generator().manual_seed(seed)
    with torch.device("meta"):
        names = {name: tuple(t.shape) for name, t in torchvision.models.vgg16(weights=None).state_dict().items()}
    state = collections.OrderedDict()
    for name, shape in names.items():
        if name.endswith("weight") and len(shape) == 4:
            fan_in = shape[1] * shape[2] * shape[3]
            state[name] = torch.randn(shape, generator=gen) * (2.0 / fan_in) ** 0.5
        elif name.endswith("weight"):
            rows, cols = shape
            base = torch.randn(rows * 7 + cols, generator=gen) * (2.0 / cols) ** 0.5
            state[name] = torch.as_strided(base, (rows, cols), (7, 1))
        else:
            state[name] = 0.01 * torch.randn(shape, generator=gen)
    return state


def random_lpips_state(seed: int = 0) -> dict[str, torch.Tensor]:
    """Random non-negative LPIPS v0.1 lin weights with the lpips package's names ('lin{i}.model.1.weight')."""
    gen = torch.Generator().manual_seed(seed)
    return {
        f"lin{i}.model.1.weight": torch.rand([1, c, 1, 1], generator=gen)
        for i, c in enumerate((64, 128, 256, 512, 512))
    }


# ----------------------------------------------------------------------------
# Tiny generator and dataset.


class TinyMapping(torch.nn.Module):
    def __init__(self, z_dim: int, c_dim: int, w_dim: int, num_ws: int):
        super().__init__()
        self.num_ws = num_ws
        self.fc = torch.nn.Linear(z_dim + c_dim, w_dim)

    def forward(self, z, c, truncation_psi=1, truncation_cutoff=None, update_emas=False):
        x = torch.cat([z, c], dim=1) if c.shape[1] else z
        return torch.tanh(self.fc(x)).unsqueeze(1).repeat([1, self.num_ws, 1])


class TinySynthesis(torch.nn.Module):
    def __init__(self, w_dim: int, img_resolution: int, img_channels: int):
        super().__init__()
        self.img_resolution = img_resolution
        self.fc = torch.nn.Linear(w_dim, img_channels * 4 * 4)
        self.img_channels = img_channels
        self.register_buffer("noise_const", torch.zeros([img_resolution, img_resolution]))

    def forward(self, ws, noise_mode="const", force_fp32=False):
        x = self.fc(ws[:, 0]).view(-1, self.img_channels, 4, 4)
        x = F.interpolate(x, size=(self.img_resolution, self.img_resolution), mode="bilinear", align_corners=False)
        return torch.tanh(x + 0.1 * self.noise_const)


class TinyGenerator(torch.nn.Module):
    """Generator with the official call signature (G(z, c), G.mapping, G.synthesis, noise_const buffer)."""

    def __init__(self, z_dim: int = 8, c_dim: int = 0, img_resolution: int = 32, img_channels: int = 3, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.z_dim, self.c_dim, self.w_dim, self.num_ws = z_dim, c_dim, 16, 4
        self.img_resolution, self.img_channels = img_resolution, img_channels
        self.mapping = TinyMapping(z_dim, c_dim, self.w_dim, self.num_ws)
        self.synthesis = TinySynthesis(self.w_dim, img_resolution, img_channels)

    def forward(self, z, c, truncation_psi=1, truncation_cutoff=None, update_emas=False, **synthesis_kwargs):
        return self.synthesis(self.mapping(z, c), **synthesis_kwargs)


def write_image_folder(folder: str, num: int, resolution: int = 32, channels: int = 3, seed: int = 0) -> str:
    """A folder of `num` random-looking smooth PNG images (RGB or greyscale)."""
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(num):
        low = rng.uniform(0, 255, size=(4, 4, channels))
        img = np.array(
            PIL.Image.fromarray(low.astype(np.uint8).squeeze()).resize((resolution, resolution), PIL.Image.BILINEAR)
        )
        PIL.Image.fromarray(img).save(os.path.join(folder, f"img{i:05d}.png"))
    return folder


# ----------------------------------------------------------------------------
# Two-process runs (torch.distributed, gloo on CPU).


def distributed_worker(
    rank: int, world_size: int, init_file: str, data_dir: str, detector_dir: str, out_dir: str
) -> None:
    """One process of a multi-process metric run: dataset/generator features and KID; rank 0 saves them."""
    import numpy as np
    import torch.distributed

    from metrics import metric_main, metric_utils

    torch.set_num_threads(1)
    torch.distributed.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    try:
        kwargs = dict(
            G=TinyGenerator(z_dim=8, img_resolution=32),
            G_kwargs=dict(noise_mode="const"),
            dataset_kwargs=dict(path=data_dir),
            device="cpu",
            detector_dir=detector_dir,
            batch_size=2,
            num_gpus=world_size,
            rank=rank,
            cache=False,
        )
        opts = metric_utils.MetricOptions(**kwargs)
        real = metric_utils.compute_feature_stats_for_dataset(
            opts, "inception", dict(return_features=True), capture_all=True
        ).get_all()
        gen = metric_utils.compute_feature_stats_for_generator(
            opts, "inception", dict(return_features=True), capture_all=True, max_items=5
        ).get_all()
        kid = metric_main.calc_metric("kid5_full", **kwargs)
        if rank == 0:
            np.savez(
                os.path.join(out_dir, "result.npz"),
                real=real,
                gen=gen,
                kid=kid.results.kid5_full,
                num_gpus=kid.num_gpus,
            )
    finally:
        torch.distributed.destroy_process_group()
