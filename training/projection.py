"""Projection of an image into the W space of a generator, as StyleGAN2-ADA's projector.py does it (the CLI is
projector.py; compare.py's report projects with it too): the target conversion, the optimisation, the LPIPS
distance, and the outputs (projected w, video frames, the labelled comparison grid, the jsonl records).
"""

from __future__ import annotations

import copy
import dataclasses
import importlib.util
import io
import json
import math
import os
import tempfile
import time
from collections.abc import Iterable, Iterator

import numpy as np
import PIL.Image
import torch
import torch.nn.functional as F

from dnnlib.files import atomic_write
from training import image_convert, sampling


class TargetError(ValueError):
    """A target image that cannot be projected (missing, unreadable, or channels the projector does not handle)."""


VGG_MAX_SIZE = 256  # larger images are box-downsampled to this, as official
VGG_MIN_SIZE = 32  # VGG16 halves the size five times; LPIPS needs at least 1x1 after the last pool
COMPARE_MIN_CELL = 128  # compare.png upscales each image by an integer factor to at least this many pixels
COMPARE_LABEL_HEIGHT = 40  # pixels of label text under each image in compare.png
_LABEL_LINE = 12  # pixels per text line
LABEL_LINES = 3


@dataclasses.dataclass(frozen=True)
class ProjectionOptions:
    """The official projector's hyper-parameters (StyleGAN2-ADA projector.py defaults)."""

    num_steps: int = 1000
    w_avg_samples: int = 10000
    initial_learning_rate: float = 0.1
    initial_noise_factor: float = 0.05
    lr_rampdown_length: float = 0.25
    lr_rampup_length: float = 0.05
    noise_ramp_length: float = 0.75
    regularize_noise_weight: float = 1e5


@dataclasses.dataclass
class ProjectionResult:
    """w per step [num_steps, num_ws, w_dim] (float32, on the projection device) and LPIPS distances (unitless)."""

    w_steps: torch.Tensor
    initial_distance: float  # image of the start point w_avg (uint8, the network's constant noise) vs target
    final_distance: float  # image of the last w, as saved in proj.png, vs target
    last_step_distance: float  # what the optimiser saw at its last step (optimised noise maps)
    seconds: float


# ----------------------------------------------------------------------------
# Target image.


def load_target(
    path: str, resolution: int, channels: int, background: tuple[int, int, int] = image_convert.DEFAULT_BACKGROUND
) -> np.ndarray:
    """Any PIL-readable image -> uint8 [resolution, resolution, channels] by dataset_tool.py's rule
    (training/image_convert.py): transparency composited over `background` (--background, white as dataset_tool's
    default), palettes expanded, 16-bit scaled, the centre square, Lanczos resize. So a transparent sprite's
    background is the colour its model trained on."""
    if channels not in (1, 3):
        raise TargetError(f"the network makes {channels}-channel images; the projector handles 1 or 3")
    if not os.path.isfile(path):
        raise TargetError(f"no such file: {path}")
    try:
        with PIL.Image.open(path) as image:
            image.load()
            if image_convert.has_alpha(image):
                print(f"--target has transparency: composited over RGB{background} (--background, as in dataset_tool)")
            image = image_convert.to_mode(image, "RGB" if channels == 3 else "L", background)
    except (OSError, ValueError, PIL.Image.DecompressionBombError) as err:
        raise TargetError(f"cannot read {path} as an image ({type(err).__name__}: {err})") from None
    image = image_convert.resize_to(image_convert.center_crop_square(image), resolution, "lanczos")
    pixels = np.asarray(image, dtype=np.uint8)
    return pixels[:, :, np.newaxis] if pixels.ndim == 2 else pixels


# ----------------------------------------------------------------------------
# The optimisation.


def learning_rate(step: int, opts: ProjectionOptions) -> float:
    """Official schedule: linear ramp-up over lr_rampup_length, cosine ramp-down over lr_rampdown_length."""
    t = step / opts.num_steps
    ramp = min(1.0, (1.0 - t) / opts.lr_rampdown_length)
    ramp = 0.5 - 0.5 * math.cos(ramp * math.pi)
    ramp = ramp * min(1.0, t / opts.lr_rampup_length)
    return opts.initial_learning_rate * ramp


def w_noise_scale(step: int, w_std: float, opts: ProjectionOptions) -> float:
    """Std of the Gaussian noise added to w at `step`: quadratic decay to 0 at noise_ramp_length."""
    t = step / opts.num_steps
    return w_std * opts.initial_noise_factor * max(0.0, 1.0 - t / opts.noise_ramp_length) ** 2


def noise_regularization(noise_bufs: list[torch.Tensor]) -> torch.Tensor:
    """Sum over noise maps [H, W] and their 2x box-downsamplings down to 8x8 of squared 1-pixel autocorrelations."""
    reg = torch.zeros([], device=noise_bufs[0].device) if noise_bufs else torch.zeros([])
    for buf in noise_bufs:
        noise = buf[None, None, :, :]
        while True:
            reg = reg + (noise * torch.roll(noise, shifts=1, dims=3)).mean() ** 2
            reg = reg + (noise * torch.roll(noise, shifts=1, dims=2)).mean() ** 2
            if noise.shape[2] <= 8:
                break
            noise = F.avg_pool2d(noise, kernel_size=2)
    return reg


def vgg_input(images: torch.Tensor) -> torch.Tensor:
    """Images [N, C, H, H] in [0, 255] -> [N, 3, S, S] for the VGG16 LPIPS embedding (S in [32, 256])."""
    if images.shape[1] == 1:
        images = images.repeat([1, 3, 1, 1])
    if images.shape[2] > VGG_MAX_SIZE:
        images = F.interpolate(images, size=(VGG_MAX_SIZE, VGG_MAX_SIZE), mode="area")
    elif images.shape[2] < VGG_MIN_SIZE:
        factor = -(-VGG_MIN_SIZE // images.shape[2])
        images = images.repeat_interleave(factor, dim=2).repeat_interleave(factor, dim=3)
    return images


def lpips_embedding(vgg16: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    """[N, C, H, H] in [0, 255] -> [N, D]; the squared L2 distance of two rows is their LPIPS distance."""
    return vgg16(vgg_input(images), resize_images=False, return_lpips=True)


def random_labels(G: torch.nn.Module, num: int, class_idx: int | None, rnd: np.random.RandomState) -> np.ndarray:
    """Labels [num, c_dim] for the w statistics: one class, or uniformly random classes when none is given."""
    labels = np.zeros([num, G.c_dim], dtype=np.float32)
    if G.c_dim > 0:
        classes = np.full(num, class_idx) if class_idx is not None else rnd.randint(G.c_dim, size=num)
        labels[np.arange(num), classes] = 1
    return labels


@torch.no_grad()
def w_statistics(
    G: torch.nn.Module, num_samples: int, class_idx: int | None, device: torch.device, batch_size: int = 1000
) -> tuple[torch.Tensor, float]:
    """(w_avg [1, 1, w_dim], w_std) of `num_samples` mapped z ~ N(0, I) (RandomState(123) as official).

    w_std is the root mean squared distance to w_avg, summed over the w_dim coordinates.
    """
    rnd = np.random.RandomState(123)
    z = rnd.randn(num_samples, G.z_dim)
    c = random_labels(G, num_samples, class_idx, rnd)
    ws = []
    for start in range(0, num_samples, batch_size):
        z_batch = torch.from_numpy(z[start : start + batch_size]).to(device)
        c_batch = torch.from_numpy(c[start : start + batch_size]).to(device)
        ws.append(G.mapping(z_batch, c_batch)[:, :1, :].to(torch.float32).cpu())
    w = torch.cat(ws).to(torch.float64)  # [N, 1, C]
    w_avg = w.mean(dim=0, keepdim=True)
    w_std = float(((w - w_avg).square().sum() / num_samples).sqrt())
    return w_avg.to(torch.float32).to(device), w_std


def project(
    G: torch.nn.Module,
    target: torch.Tensor,
    vgg16: torch.nn.Module,
    *,
    opts: ProjectionOptions = ProjectionOptions(),
    class_idx: int | None = None,
    seed: int = 303,
    device: torch.device = torch.device("cpu"),
    progress: bool = True,
    desc: str = "project",
) -> ProjectionResult:
    """Find w (broadcast to all layers) whose image is LPIPS-closest to `target` (uint8 [C, H, W], G's size).

    G is left as it is (copies on `device` are used; one has its noise maps optimised). Random draws come from
    a CPU generator seeded with `seed`, so results do not depend on the device or on projections run before.
    """
    if tuple(target.shape) != (G.img_channels, G.img_resolution, G.img_resolution):
        raise ValueError(
            f"target shape {list(target.shape)} != [{G.img_channels}, {G.img_resolution}, "
            f"{G.img_resolution}] of the network"
        )
    if opts.num_steps < 1:
        raise ValueError(f"num_steps must be >= 1, got {opts.num_steps}")
    start_time = time.time()
    G_const = copy.deepcopy(G).eval().requires_grad_(False).to(device)  # the network as saved: constant noise
    G = copy.deepcopy(G_const)  # its noise maps become optimisation variables
    gen = torch.Generator().manual_seed(seed)

    w_avg, w_std = w_statistics(G, opts.w_avg_samples, class_idx, device)
    noise_bufs = [buf for name, buf in G.synthesis.named_buffers() if name.endswith("noise_const")]
    with torch.no_grad():
        target_features = lpips_embedding(vgg16, target.unsqueeze(0).to(device).to(torch.float32))

    def saved_image_distance(w: torch.Tensor) -> float:
        """LPIPS of the image as saved (uint8, the network's constant noise) for w [1, 1, w_dim]."""
        img = synthesize_uint8(G_const, w.repeat([1, G.num_ws, 1]))
        img = torch.from_numpy(img.transpose(0, 3, 1, 2)).to(device).to(torch.float32)
        with torch.no_grad():
            return float((lpips_embedding(vgg16, img) - target_features).square().sum())

    initial_distance = saved_image_distance(w_avg)
    w_opt = w_avg.clone().requires_grad_(True)
    w_out = torch.zeros([opts.num_steps, G.w_dim], dtype=torch.float32, device=device)
    for buf in noise_bufs:
        buf.copy_(torch.randn(buf.shape, generator=gen).to(buf))
        buf.requires_grad_(True)
    optimizer = torch.optim.Adam([w_opt] + noise_bufs, betas=(0.9, 0.999), lr=opts.initial_learning_rate)

    from tqdm import tqdm

    dist = loss = torch.zeros([])
    with tqdm(
        range(opts.num_steps), desc=desc, unit="step", disable=not progress, leave=False, dynamic_ncols=True
    ) as bar:
        for step in bar:
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(step, opts)
            w_noise = torch.randn(w_opt.shape, generator=gen).to(device) * w_noise_scale(step, w_std, opts)
            synth = G.synthesis((w_opt + w_noise).repeat([1, G.num_ws, 1]), noise_mode="const")
            synth_features = lpips_embedding(vgg16, (synth + 1) * (255 / 2))
            dist = (target_features - synth_features).square().sum()
            loss = dist + noise_regularization(noise_bufs) * opts.regularize_noise_weight

            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            w_out[step] = w_opt.detach()[0, 0]
            with torch.no_grad():  # renormalise every noise map to zero mean, unit variance
                for buf in noise_bufs:
                    buf -= buf.mean()
                    buf *= buf.square().mean().rsqrt()
            bar.set_postfix_str(f"dist {dist.item():.4f} loss {loss.item():.4f}", refresh=False)

    final_distance = saved_image_distance(w_out[-1:].unsqueeze(1))
    return ProjectionResult(
        w_steps=w_out.unsqueeze(1).repeat([1, G.num_ws, 1]),
        initial_distance=initial_distance,
        final_distance=final_distance,
        last_step_distance=dist.item(),
        seconds=time.time() - start_time,
    )


# ----------------------------------------------------------------------------
# Outputs.


@torch.no_grad()
def synthesize_uint8(G: torch.nn.Module, ws: torch.Tensor, batch_size: int = 16) -> np.ndarray:
    """ws [N, num_ws, w_dim] -> uint8 [N, H, W, C] with the network's constant noise."""
    images = []
    for start in range(0, ws.shape[0], batch_size):
        img = G.synthesis(ws[start : start + batch_size], noise_mode="const")
        images.append(sampling.to_uint8(img.permute(0, 2, 3, 1)).cpu().numpy())
    return np.concatenate(images)


def save_projected_w(path: str, w: torch.Tensor) -> None:
    """w [num_ws, w_dim] -> npz with key 'w' of shape [1, num_ws, w_dim] (official layout), atomically."""
    buffer = io.BytesIO()
    np.savez(buffer, w=w.unsqueeze(0).detach().cpu().numpy().astype(np.float32))
    atomic_write(path, lambda f: f.write(buffer.getvalue()))


def load_projected_w(path: str) -> np.ndarray:
    """projected_w.npz -> float32 [1, num_ws, w_dim]."""
    with np.load(path) as data:
        return data["w"]


def _rgb(image: np.ndarray) -> np.ndarray:
    return np.repeat(image, 3, axis=2) if image.shape[2] == 1 else image


def video_support() -> str | None:
    """None when mp4 files can be written, else why not."""
    missing = [
        name
        for name, module in (("imageio", "imageio"), ("imageio-ffmpeg", "imageio_ffmpeg"))
        if importlib.util.find_spec(module) is None
    ]
    return f"needs the {' and '.join(missing)} package (pip install {' '.join(missing)})" if missing else None


def iter_frames(G: torch.nn.Module, ws: torch.Tensor, batch_size: int = 16) -> Iterator[np.ndarray]:
    """uint8 [H, W, C] images of ws [N, num_ws, w_dim], made a batch at a time (1000 steps at 1024 px is 3 GB)."""
    for start in range(0, ws.shape[0], batch_size):
        yield from synthesize_uint8(G, ws[start : start + batch_size], batch_size)


def write_video(path: str, target: np.ndarray, frames: Iterable[np.ndarray]) -> bool:
    """proj.mp4: target | projection after each step, 10 fps, libx264 (official settings); False if it failed."""
    import imageio

    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".proj.", suffix=".mp4", dir=directory)
    os.close(fd)
    try:
        writer = imageio.get_writer(tmp, mode="I", fps=10, codec="libx264", bitrate="16M")
        try:
            for frame in frames:
                writer.append_data(np.concatenate([_rgb(target), _rgb(frame)], axis=1))
        finally:
            writer.close()
        os.replace(tmp, path)
    except Exception as err:  # the projection itself is saved already; a codec problem must not lose it
        if os.path.exists(tmp):
            os.unlink(tmp)
        print(f"Could not write {path} ({type(err).__name__}: {err}); the other outputs are written.")
        return False
    return True


def network_labels(paths: list[str]) -> list[str]:
    """File names, with the parent folder where two networks share a file name (runs' network-snapshot-*)."""
    names = [os.path.basename(p.rstrip("/")) for p in paths]
    return [
        os.path.join(os.path.basename(os.path.dirname(os.path.abspath(p))), n) if names.count(n) > 1 else n
        for p, n in zip(paths, names)
    ]


def _wrap(draw, text: str, width: int, font, at_separators: bool) -> list[str]:
    """Lines no wider than `width` pixels, broken anywhere or, when possible, after '/', '-', '_' or ' '."""
    lines: list[str] = []
    rest = text
    while rest:
        n = len(rest)
        while n > 1 and draw.textlength(rest[:n], font=font) > width:
            n -= 1
        if at_separators and n < len(rest):
            cut = max(rest.rfind(sep, 0, n) for sep in "/-_ ") + 1
            n = cut if cut > n // 2 else n
        lines.append(rest[:n])
        rest = rest[n:]
    return lines


def _fit_lines(draw, text: str, width: int, font, max_lines: int) -> list[str]:
    """At most `max_lines` lines of `text`; a name too long loses its start ('...'), since the end (the
    snapshot's kimg) is what tells snapshots of one run apart."""
    for at_separators in (True, False):
        lines = _wrap(draw, text, width, font, at_separators)
        if len(lines) <= max_lines:
            return lines
    for start in range(1, len(text)):
        lines = _wrap(draw, "..." + text[start:], width, font, at_separators=False)
        if len(lines) <= max_lines:
            return lines
    return ["..."]


def compare_grid(
    target: np.ndarray, projections: list[np.ndarray], labels: list[str], target_label: str, cols: int | None = None
) -> np.ndarray:
    """uint8 RGB grid: target in the first column of the first row, projections in rows of `cols` to its right.

    Every image [H, W, C] is upscaled by the integer factor max(1, ceil(COMPARE_MIN_CELL / H)) (pixel
    replication) and gets COMPARE_LABEL_HEIGHT pixels of label below. Size: rows * (cell + label) x (cols + 1) * cell.
    """
    from PIL import ImageDraw, ImageFont

    cols = len(projections) if cols is None else max(1, min(cols, len(projections)))
    rows = -(-len(projections) // cols)
    res = target.shape[0]
    factor = max(1, -(-COMPARE_MIN_CELL // res))
    cell = res * factor
    grid = PIL.Image.new("RGB", ((cols + 1) * cell, rows * (cell + COMPARE_LABEL_HEIGHT)), (255, 255, 255))
    draw = ImageDraw.Draw(grid)
    font = ImageFont.load_default()
    items = [(0, 0, target, target_label)] + [
        (1 + i % cols, i // cols, img, text) for i, (img, text) in enumerate(zip(projections, labels))
    ]
    for col, row, image, text in items:
        x, y = col * cell, row * (cell + COMPARE_LABEL_HEIGHT)
        big = _rgb(image).repeat(factor, axis=0).repeat(factor, axis=1)
        grid.paste(PIL.Image.fromarray(big, "RGB"), (x, y))
        parts = text.split("\n")[:LABEL_LINES]
        lines = _fit_lines(draw, parts[0], cell - 4, font, max_lines=LABEL_LINES - len(parts) + 1)
        for part in parts[1:]:  # later parts (the distance) get one line each
            lines += _fit_lines(draw, part, cell - 4, font, max_lines=1)
        for k, line in enumerate(lines):
            draw.text((x + 2, y + cell + 2 + k * _LABEL_LINE), line, fill=(0, 0, 0), font=font)
    return np.asarray(grid)


def write_jsonl(path: str, records: list[dict]) -> None:
    """All records so far, one JSON object a line, written atomically (a crash keeps the previous file)."""
    text = "".join(json.dumps(record) + "\n" for record in records)
    atomic_write(path, lambda f: f.write(text.encode()))
