"""Turn arbitrary PIL images into the 8-bit L/RGB squares a training set holds (used by dataset_tool.py).

Colour modes are converted, never rejected: transparency is composited over a solid background (white by
default, documented in dataset_tool.py's --help), palettes are expanded, 16-bit greyscale is scaled to 8 bits.
"""

from __future__ import annotations

import numpy as np
import PIL.Image

GREY_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"})
ALPHA_MODES = frozenset({"RGBA", "RGBa", "LA", "La", "PA"})
RESIZE_FILTERS = {"box": PIL.Image.BOX, "lanczos": PIL.Image.LANCZOS}
TRANSFORMS = ("center-crop", "center-crop-wide", "pad")
DEFAULT_BACKGROUND = (255, 255, 255)
PAD_COLOUR = 0  # --transform=pad borders: black, like center-crop-wide's letterbox


def has_alpha(image: PIL.Image.Image) -> bool:
    """True for modes with an alpha channel and for palette/grey/RGB images with a transparency key."""
    return image.mode in ALPHA_MODES or "transparency" in image.info


def target_mode_for(modes: set[str]) -> str:
    """'L' when every source image is greyscale, else 'RGB' (a dataset must have one channel count)."""
    return "L" if modes and modes <= GREY_MODES else "RGB"


def describe_conversion(mode: str, transparent: bool, target: str) -> str | None:
    """One-line description of what to_mode does to an image of this kind, or None if nothing."""
    if mode == target and not transparent:
        return None
    what = f"{mode}{' with transparency' if transparent and mode not in ALPHA_MODES else ''} -> {target}"
    if transparent or mode in ALPHA_MODES:
        what += " (alpha composited over the background)"
    elif mode.startswith("I"):
        what += " (16-bit values scaled to 8 bits)"
    elif mode == "P":
        what += " (palette expanded)"
    return what


def _grey_to_8bit(image: PIL.Image.Image) -> PIL.Image.Image:
    if image.mode in ("1", "L"):
        return image.convert("L")
    array = np.asarray(image)
    if image.mode == "F":  # floats: taken as already in 0..255
        array = np.rint(array)
    else:  # 'I' / 'I;16*' come from 16-bit files: 0..65535 -> 0..255
        array = np.rint(array.astype(np.float64) / 257)
    return PIL.Image.fromarray(array.clip(0, 255).astype(np.uint8), "L")


def to_mode(
    image: PIL.Image.Image, target: str, background: tuple[int, int, int] = DEFAULT_BACKGROUND
) -> PIL.Image.Image:
    """8-bit 'L' or 'RGB' copy of `image`; transparent pixels are blended over the `background` colour."""
    if target not in ("L", "RGB"):
        raise ValueError(f"target mode must be L or RGB, got {target!r}")
    if has_alpha(image):
        if image.mode in ("LA", "La") or (image.mode in GREY_MODES and target == "L"):
            rgba = image.convert("LA").convert("RGBA")
        else:
            rgba = image.convert("RGBA")
        canvas = PIL.Image.new("RGBA", rgba.size, tuple(background) + (255,))
        image = PIL.Image.alpha_composite(canvas, rgba).convert("RGB")
    elif image.mode in GREY_MODES:
        image = _grey_to_8bit(image)
    if image.mode == target:
        return image
    return image.convert(target)  # RGB->L uses ITU-R 601-2 luma; P/CMYK/YCbCr->RGB are exact expansions


def center_crop_square(image: PIL.Image.Image) -> PIL.Image.Image:
    """The largest centred square (side = the shorter side)."""
    width, height = image.size
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    return image.crop((left, top, left + side, top + side))


def center_crop_wide(image: PIL.Image.Image, width: int, height: int, resize_filter: str) -> PIL.Image.Image | None:
    """Crop to the width:height aspect, resize to width x height, centre on a black width x width square.

    None when the image is smaller than the target (as the official tool, it is skipped rather than upscaled).
    """
    src_w, src_h = image.size
    crop_h = int(np.round(width * src_h / src_w))
    if src_w < width or crop_h < height:
        return None
    top = (src_h - crop_h) // 2
    image = image.crop((0, top, src_w, top + crop_h)).resize((width, height), RESIZE_FILTERS[resize_filter])
    canvas = PIL.Image.new(image.mode, (width, width), 0)
    canvas.paste(image, (0, (width - height) // 2))
    return canvas


def pad_square(image: PIL.Image.Image, size: int, resize_filter: str) -> PIL.Image.Image:
    """The whole image resized so its longer side is `size`, centred on a size x size black square.

    Resizing before padding keeps the border sharp (no filter ringing at its edge). Square images are just resized.
    """
    width, height = image.size
    if width == height:
        return resize_to(image, size, resize_filter)
    scale = size / max(width, height)
    new_w, new_h = max(1, int(round(width * scale))), max(1, int(round(height * scale)))
    if (new_w, new_h) != (width, height):
        image = image.resize((new_w, new_h), RESIZE_FILTERS[resize_filter])
    canvas = PIL.Image.new(image.mode, (size, size), PAD_COLOUR)
    canvas.paste(image, ((size - new_w) // 2, (size - new_h) // 2))
    return canvas


def resize_to(image: PIL.Image.Image, size: int, resize_filter: str) -> PIL.Image.Image:
    """Square `image` resized to size x size (unchanged when already that size)."""
    if image.size == (size, size):
        return image
    return image.resize((size, size), RESIZE_FILTERS[resize_filter])
