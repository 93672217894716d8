"""Turn arbitrary PIL images into the 8-bit L/RGB squares a training set holds (used by dataset_tool.py).

Colour modes are converted, never rejected: palettes are expanded, 16-bit greyscale is scaled to 8 bits.

One rule for the colours a source does not give, shared by dataset_tool.py and projector.py: transparent pixels are
composited over the background colour (`--background`, white by default), and the borders that --transform=pad
and center-crop-wide add are the pad colour (`--pad-colour`, black by default, the official letterbox). A
projector target is converted as dataset_tool.py converts a training image, so give it the --background the
dataset was made with.
"""

from __future__ import annotations

import numpy as np
import PIL.Image

GREY_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"})
ALPHA_MODES = frozenset({"RGBA", "RGBa", "LA", "La", "PA"})
RESIZE_FILTERS = {"box": PIL.Image.BOX, "lanczos": PIL.Image.LANCZOS}
TRANSFORMS = ("center-crop", "center-crop-wide", "pad")
COLOUR_NAMES = {"white": (255, 255, 255), "black": (0, 0, 0), "grey": (128, 128, 128), "gray": (128, 128, 128)}
DEFAULT_BACKGROUND = COLOUR_NAMES["white"]
DEFAULT_PAD_COLOUR = COLOUR_NAMES["black"]  # --transform=pad borders, like center-crop-wide's official letterbox


def parse_colour(text: str) -> tuple[int, int, int]:
    """'white', 'black', 'grey', 'R,G,B' (0..255 each) or '#rrggbb' -> (R, G, B); ValueError naming the text."""
    value = text.strip().lower()
    if value in COLOUR_NAMES:
        return COLOUR_NAMES[value]
    try:
        if value.startswith("#") and len(value) == 7:
            rgb = tuple(int(value[i : i + 2], 16) for i in (1, 3, 5))
        else:
            rgb = tuple(int(part) for part in value.split(","))
    except ValueError:
        rgb = ()
    if len(rgb) != 3 or not all(0 <= c <= 255 for c in rgb):
        raise ValueError(f"{text!r} is not a colour: use white, black, grey, R,G,B (0-255 each) or #rrggbb")
    return rgb


def describe_colour(colour: tuple[int, int, int]) -> str:
    """'white', 'black', 'grey' or 'RGB(r, g, b)'."""
    names = {rgb: name for name, rgb in COLOUR_NAMES.items() if name != "gray"}
    return names.get(tuple(colour), f"RGB{tuple(colour)}")


def fill_value(mode: str, colour: tuple[int, int, int]) -> int | tuple[int, int, int]:
    """`colour` as a PIL fill for an 'L' or 'RGB' image (its ITU-R 601 luma for 'L', as PIL converts RGB)."""
    if mode == "L":
        red, green, blue = colour
        return int((red * 299 + green * 587 + blue * 114 + 500) // 1000)
    return tuple(colour)


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


def center_crop_wide(
    image: PIL.Image.Image,
    width: int,
    height: int,
    resize_filter: str,
    pad_colour: tuple[int, int, int] = DEFAULT_PAD_COLOUR,
) -> PIL.Image.Image | None:
    """Crop to the width:height aspect, resize to width x height, centre on a width x width square of pad_colour.

    None when the image is smaller than the target (as the official tool, it is skipped rather than upscaled).
    """
    src_w, src_h = image.size
    crop_h = int(np.round(width * src_h / src_w))
    if src_w < width or crop_h < height:
        return None
    top = (src_h - crop_h) // 2
    image = image.crop((0, top, src_w, top + crop_h)).resize((width, height), RESIZE_FILTERS[resize_filter])
    canvas = PIL.Image.new(image.mode, (width, width), fill_value(image.mode, pad_colour))
    canvas.paste(image, (0, (width - height) // 2))
    return canvas


def pad_square(
    image: PIL.Image.Image, size: int, resize_filter: str, pad_colour: tuple[int, int, int] = DEFAULT_PAD_COLOUR
) -> PIL.Image.Image:
    """The whole image resized so its longer side is `size`, centred on a size x size square of pad_colour.

    Resizing before padding keeps the border sharp (no filter ringing at its edge). Square images are just resized.
    """
    width, height = image.size
    if width == height:
        return resize_to(image, size, resize_filter)
    scale = size / max(width, height)
    new_w, new_h = max(1, int(round(width * scale))), max(1, int(round(height * scale)))
    if (new_w, new_h) != (width, height):
        image = image.resize((new_w, new_h), RESIZE_FILTERS[resize_filter])
    canvas = PIL.Image.new(image.mode, (size, size), fill_value(image.mode, pad_colour))
    canvas.paste(image, ((size - new_w) // 2, (size - new_h) // 2))
    return canvas


def resize_to(image: PIL.Image.Image, size: int, resize_filter: str) -> PIL.Image.Image:
    """Square `image` resized to size x size (unchanged when already that size)."""
    if image.size == (size, size):
        return image
    return image.resize((size, size), RESIZE_FILTERS[resize_filter])
