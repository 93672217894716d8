"""Convert images into a training set: a zip (or folder) of PNGs in 00000/img00000000.png layout + dataset.json.

Same flags and output layout as StyleGAN2-ADA's dataset_tool.py. Differences: odd inputs (greyscale, RGBA,
palette, 16-bit, non-square, mixed sizes, any format PIL reads) are converted with a message instead of rejected,
upscaling and skipped non-image files are reported, and the output appears atomically (written under a temporary
name, then renamed). Ours only: --transform=pad (whole image, --pad-colour borders), --background for transparency
(shared with projector.py: training/image_convert.py states the rule) and --labels=folders (class labels
from sub-folder names).
"""

from __future__ import annotations

import collections
import contextlib
import io
import json
import os
import shutil
import sys
import tempfile
import zipfile
from collections.abc import Iterator

import click
import PIL.Image
from tqdm import tqdm

from dnnlib import files
from dnnlib.cli import Parsed
from training.dataset import IMAGE_READ_ERRORS, DatasetError, describe_image_error
from training.dataset_sources import LABEL_SOURCES, ImageSource, open_source
from training.image_convert import (
    DEFAULT_BACKGROUND,
    DEFAULT_PAD_COLOUR,
    RESIZE_FILTERS,
    TRANSFORMS,
    center_crop_square,
    center_crop_wide,
    describe_colour,
    describe_conversion,
    pad_square,
    parse_colour,
    resize_to,
    target_mode_for,
    to_mode,
)

NOTE_EXAMPLES = 3  # file names shown in a note about skipped or upscaled files


def parse_resolution(text: str | None) -> tuple[int, int] | None:
    """'WxH' or 'N' -> (W, H)."""
    if text is None:
        return None
    parts = text.lower().split("x")
    try:
        width, height = (int(parts[0]), int(parts[-1])) if len(parts) in (1, 2) else (0, 0)
    except ValueError:
        width = height = 0
    if width < 1 or height < 1:
        raise click.BadParameter(f"expected WxH such as 256x256, got {text!r}", param_hint="--resolution")
    return width, height


def _is_pow2(n: int) -> bool:
    return n >= 4 and n & (n - 1) == 0


class ArchiveWriter:
    """Writes files into a zip or a folder under a temporary name; commit() renames it into place."""

    def __init__(self, dest: str):
        self.dest = dest
        self.is_zip = dest.lower().endswith(".zip")
        parent = os.path.dirname(os.path.abspath(dest))
        self.created = files.missing_folders(parent)  # removed again when the conversion fails
        self.existed = os.path.lexists(dest)
        prefix = f".{os.path.basename(dest)}."
        if self.is_zip and os.path.isdir(dest):
            raise DatasetError(f"--dest {dest}: is a folder, cannot write a zip there")
        if not self.is_zip and os.path.exists(dest) and (not os.path.isdir(dest) or os.listdir(dest)):
            raise DatasetError(
                f"--dest {dest}: already exists and is not an empty folder; remove it or choose another --dest"
            )
        self.tmp = None
        with self._writing():
            os.makedirs(parent, exist_ok=True)
            if self.is_zip:
                fd, self.tmp = tempfile.mkstemp(dir=parent, prefix=prefix, suffix=".tmp")
                os.close(fd)
                self.zip = zipfile.ZipFile(self.tmp, "w", compression=zipfile.ZIP_STORED)
            else:
                self.tmp = tempfile.mkdtemp(dir=parent, prefix=prefix, suffix=".tmp")

    @contextlib.contextmanager
    def _writing(self) -> Iterator[None]:
        """A failed write (full disk, read-only folder) as one DatasetError line; the partial output removed."""
        try:
            yield
        except OSError as err:
            self.abort()
            reason = files.write_error(err, self.dest, os.path.dirname(os.path.abspath(self.dest)), None, self.existed)
            raise DatasetError(f"--dest: {reason}") from None

    def write(self, fname: str, data: bytes) -> None:
        with self._writing():
            if self.is_zip:
                self.zip.writestr(fname, data)
            else:
                path = os.path.join(self.tmp, fname)
                os.makedirs(os.path.dirname(path), exist_ok=True)
                with open(path, "wb") as file:
                    file.write(data)

    def commit(self) -> None:
        umask = os.umask(0)
        os.umask(umask)
        with self._writing():
            os.chmod(self.tmp, (0o666 if self.is_zip else 0o777) & ~umask)  # mkstemp/mkdtemp made it private
            if self.is_zip:
                self.zip.close()
                os.replace(self.tmp, self.dest)
            else:
                if os.path.isdir(self.dest):
                    os.rmdir(self.dest)  # empty (checked in __init__)
                os.replace(self.tmp, self.dest)
        self.tmp = self.created = None

    def abort(self) -> None:
        """Remove the temporary output and the folders made for it; safe to call more than once."""
        if self.is_zip and getattr(self, "zip", None) is not None:
            with contextlib.suppress(OSError):  # closing writes the directory, which a full disk refuses too
                self.zip.close()
            self.zip = None
        if self.tmp is not None:
            if self.is_zip:
                with contextlib.suppress(OSError):
                    os.remove(self.tmp)
            else:
                shutil.rmtree(self.tmp, ignore_errors=True)
            self.tmp = None
        files.remove_empty_folders(self.created or [])


def _examples(names: list[str]) -> str:
    more = f" (and {len(names) - NOTE_EXAMPLES} more)" if len(names) > NOTE_EXAMPLES else ""
    return ", ".join(names[:NOTE_EXAMPLES]) + more


def upscaling_note(source: ImageSource, sizes: list[tuple[int, int]], sides: list[int], size: int) -> str | None:
    """A warning when some images are smaller than `size` (their relevant side, `sides`), or None.

    The side is what gets scaled to `size`: the shorter one for center-crop, the longer one for pad.
    """
    factors = [size / side for side in sides]
    up = [idx for idx, factor in enumerate(factors) if factor > 1]
    if not up:
        return None
    worst = max(up, key=lambda idx: factors[idx])
    lo, hi = min(factors[idx] for idx in up), factors[worst]
    by = f"{hi:.2f}x" if round(lo, 2) == round(hi, 2) else f"{lo:.2f}x to {hi:.2f}x"
    fits = 1 << (min(sides).bit_length() - 1)
    hint = f"; --resolution={fits}x{fits} would upscale none" if fits >= 4 else ""
    width, height = sizes[worst]
    return (
        f"Warning: upscaling {len(up)} of {len(sizes)} image(s) to {size}x{size}, by {by} (the most: "
        f"{source.name(worst)}, {width}x{height}); upscaled images are blurry and the generator learns the "
        f"blur{hint}."
    )


def plan_output(
    source: ImageSource,
    count: int,
    resolution: tuple[int, int] | None,
    transform: str | None,
    echo=print,
    background: tuple[int, int, int] = DEFAULT_BACKGROUND,
    pad_colour: tuple[int, int, int] = DEFAULT_PAD_COLOUR,
) -> tuple[str, int, int]:
    """(target mode, output width, output height) from the image headers; echoes what will be converted."""
    kinds = collections.Counter()
    sizes = []
    for idx in range(count):
        mode, size, transparent = source.header(idx)
        kinds[(mode, transparent or mode in ("RGBA", "LA", "PA", "RGBa", "La"))] += 1
        sizes.append(tuple(size))
    target = target_mode_for({mode for mode, _ in kinds})
    for (mode, transparent), n in sorted(kinds.items()):
        what = describe_conversion(mode, transparent, target)
        if what:
            echo(f"Converting {n} image(s): {what}.")
    if any(transparent for _, transparent in kinds):
        echo(f"Transparent pixels are composited over a {describe_colour(background)} background (--background).")
    non_square = sum(1 for width, height in sizes if width != height)
    if transform == "center-crop-wide":
        if resolution is None:
            raise click.UsageError("--transform=center-crop-wide needs --resolution=WxH (e.g. 512x384)")
        width, height = resolution
        if not _is_pow2(width) or height > width:
            raise click.BadParameter(
                f"{width}x{height}: with center-crop-wide, W must be a power of two >= 4 and "
                "H <= W (the result is letterboxed to WxW)",
                param_hint="--resolution",
            )
        if height == width:
            raise click.BadParameter(
                f"{width}x{height}: center-crop-wide makes a WxH band letterboxed to WxW, so it "
                f"needs H < W (e.g. {width}x{width * 3 // 4}); for square output use the default "
                "center crop, or --transform=pad to keep whole images",
                param_hint="--resolution",
            )
        tall = [idx for idx, (w, h) in enumerate(sizes) if h > w]
        if tall:
            echo(
                f"Warning: {len(tall)} of {count} image(s) are taller than wide (e.g. {source.name(tall[0])}, "
                f"{sizes[tall[0]][0]}x{sizes[tall[0]][1]}): center-crop-wide cuts their top and bottom and squeezes "
                f"the rest into {width}x{height}; --transform=pad keeps whole images."
            )
        return target, width, height
    if non_square and transform == "pad":
        echo(
            f"Padding {non_square} non-square image(s) to squares with {describe_colour(pad_colour)} borders "
            "(--pad-colour; the whole image is kept)."
        )
    elif non_square:
        echo(
            f"Center-cropping {non_square} non-square image(s) to squares, which cuts off their long sides (use "
            "--transform=pad to keep whole images with black borders, or --transform=center-crop-wide with "
            "--resolution=WxH to keep a wide aspect)."
        )
    sides = [max(size) if transform == "pad" else min(size) for size in sizes]
    if resolution is not None:
        width, height = resolution
        if width != height or not _is_pow2(width):
            raise click.BadParameter(
                f"{width}x{height}: the trainer needs a square power-of-two size such as 256x256",
                param_hint="--resolution",
            )
        note = upscaling_note(source, sizes, sides, width)
        if note:
            echo(note)
        return target, width, height
    side = min(sides)
    out = 1 << (side.bit_length() - 1)
    if len(set(sides)) > 1 or out != side:
        smallest = sizes[sides.index(side)]
        echo(
            f"No --resolution given: the {'smallest ' if len(set(sides)) > 1 else ''}image"
            f"{'' if len(set(sides)) > 1 else 's'} {'is' if len(set(sides)) > 1 else 'are'} "
            f"{smallest[0]}x{smallest[1]}, writing {out}x{out} (the largest power of two that fits "
            f"{'the longer' if transform == 'pad' else 'the shorter'} side). Pass --resolution to choose."
        )
    if out < 4:
        raise DatasetError(f"images are too small ({side} px) for a training set; the minimum is 4x4")
    return target, out, out


def convert_image(
    image: PIL.Image.Image,
    target: str,
    width: int,
    height: int,
    transform: str | None,
    resize_filter: str,
    background: tuple[int, int, int] = DEFAULT_BACKGROUND,
    pad_colour: tuple[int, int, int] = DEFAULT_PAD_COLOUR,
) -> PIL.Image.Image | None:
    """The output image (mode `target`, square), or None when center-crop-wide finds it too small."""
    image = to_mode(image, target, background)
    if transform == "center-crop-wide":
        return center_crop_wide(image, width, height, resize_filter, pad_colour)
    if transform == "pad":
        return pad_square(image, width, resize_filter, pad_colour)
    return resize_to(center_crop_square(image), width, resize_filter)


def encode_png(image: PIL.Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="png", compress_level=1)
    return buffer.getvalue()


def describe_labels(src: ImageSource, labels: str, source: str) -> list[str]:
    """Notes on where the labels come from (and which are left out)."""
    notes = []
    if src.class_names is not None:
        shown = [f"{i}={name}" for i, name in enumerate(src.class_names)]
        if len(shown) > 12:
            shown = shown[:10] + ["...", shown[-1]]
        notes.append(
            f"Labels from {len(src.class_names)} class folders (sorted names): {', '.join(shown)}; "
            'the names are written to dataset.json as "class_names".'
        )
    if labels != "json" and getattr(src, "has_json_labels", False):
        notes.append(f"Ignoring the labels in {source}/dataset.json (--labels={labels}).")
    return notes


def convert_dataset(
    source: str,
    dest: str,
    resolution: str | None = None,
    transform: str | None = None,
    resize_filter: str = "lanczos",
    max_images: int | None = None,
    echo=print,
    progress: bool = True,
    labels: str = "json",
    background: tuple[int, int, int] = DEFAULT_BACKGROUND,
    pad_colour: tuple[int, int, int] = DEFAULT_PAD_COLOUR,
) -> int:
    """Convert `source` into `dest`; returns the number of images written. Raises DatasetError on bad input.

    labels: 'json' (the source's dataset.json, or the CIFAR-10/digits classes), 'folders' (class = sub-folder
    name, sorted names -> 0, 1, ...), 'none'.
    """
    if resize_filter not in RESIZE_FILTERS:
        raise click.BadParameter(
            f"{resize_filter!r} is not one of {sorted(RESIZE_FILTERS)}", param_hint="--resize-filter"
        )
    if transform is not None and transform not in TRANSFORMS:
        raise click.BadParameter(f"{transform!r} is not one of {TRANSFORMS}", param_hint="--transform")
    if max_images is not None and max_images < 1:
        raise click.BadParameter(f"must be >= 1, got {max_images}", param_hint="--max-images")
    if labels not in LABEL_SOURCES:
        raise click.BadParameter(f"{labels!r} is not one of {LABEL_SOURCES}", param_hint="--labels")
    src = open_source(source, labels)
    try:
        if src.skipped:
            echo(f"Skipped {len(src.skipped)} non-image file(s): {_examples(list(src.skipped))}.")
        for note in describe_labels(src, labels, source):
            echo(note)
        count = len(src) if max_images is None else min(len(src), max_images)
        target, width, height = plan_output(
            src, count, parse_resolution(resolution), transform, echo, background, pad_colour
        )
        writer = ArchiveWriter(dest)
        try:
            label_entries, written, skipped = [], 0, []
            for idx in tqdm(range(count), desc="dataset_tool", unit="img", disable=not progress, file=sys.stderr):
                with src.open(idx) as image:
                    try:
                        image.load()
                        out = convert_image(
                            image, target, width, height, transform, resize_filter, background, pad_colour
                        )
                    except IMAGE_READ_ERRORS as err:
                        raise DatasetError(
                            f"{src.name(idx)}: cannot decode image: {describe_image_error(err)}; fix or remove the file"
                        ) from None
                if out is None:
                    skipped.append(src.name(idx))
                    continue
                fname = f"{written // 1000:05d}/img{written:08d}.png"
                writer.write(fname, encode_png(out))
                if src.labels is not None:
                    label_entries.append([fname, src.labels[idx]])
                written += 1
            if skipped:
                echo(
                    f"Skipped {len(skipped)} image(s) smaller than {width}x{height} for center-crop-wide, "
                    f"e.g. {skipped[0]}."
                )
            if written == 0:
                raise DatasetError(f"--source {source}: no image could be converted")
            meta = {"labels": label_entries if src.labels is not None else None}
            if src.class_names is not None:
                meta["class_names"] = src.class_names
            writer.write("dataset.json", json.dumps(meta).encode("utf-8"))
            writer.commit()
        except BaseException:
            writer.abort()
            raise
    finally:
        src.close()
    with_labels = ""
    if src.class_names is not None:
        with_labels = f" with {len(src.class_names)} class labels"
    elif src.labels is not None:
        with_labels = " with labels"
    echo(f"Wrote {written} {target} image(s) of {width}x{width} to {dest}{with_labels}.")
    return written


@click.command(context_settings=dict(help_option_names=["-h", "--help"]))
@click.option(
    "--source",
    required=True,
    metavar="PATH",
    help="Image folder (recursive) or zip, with optional dataset.json labels; the CIFAR-10 python archive "
    "(cifar-10-python.tar.gz, or its extracted folder: the 50k training images); or sklearn:digits "
    "(the embedded 32x32 digits).",
)
@click.option(
    "--dest",
    required=True,
    metavar="PATH",
    help="Output: a .zip file (replaced atomically if present) or a new/empty folder.",
)
@click.option("--max-images", type=int, default=None, help="Convert at most this many images (in sorted order).")
@click.option(
    "--resolution",
    metavar="WxH",
    default=None,
    help="Output size, e.g. 256x256 (a square power of two; center-crop-wide allows H < W). Default: the "
    "images' own size, or the largest power of two fitting the smallest image.",
)
@click.option(
    "--transform",
    type=click.Choice(TRANSFORMS),
    default=None,
    help="center-crop: crop the centred square, then resize (non-square images get this anyway). "
    "pad: keep the whole image: resize its longer side to the resolution and pad the shorter one "
    "with --pad-colour borders (letterbox), for portrait/landscape photos. center-crop-wide: crop to the W:H "
    "aspect, resize to WxH, letterbox on --pad-colour to WxW (needs H < W; for landscape images).",
)
@click.option(
    "--background",
    type=Parsed(parse_colour, "colour"),
    default="white",
    show_default=True,
    metavar="COLOUR",
    help="What transparent pixels are composited over: white, black, grey, R,G,B or #rrggbb. Give "
    "projector.py the same --background for targets.",
)
@click.option(
    "--pad-colour",
    type=Parsed(parse_colour, "colour"),
    default="black",
    show_default=True,
    metavar="COLOUR",
    help="The borders --transform=pad and center-crop-wide add (same forms as --background).",
)
@click.option(
    "--labels",
    type=click.Choice(LABEL_SOURCES),
    default="json",
    show_default=True,
    help="Class labels: json = the source's dataset.json if it has one (CIFAR-10 and sklearn:digits: their "
    "classes); folders = the name of the sub-folder holding each image (sorted names -> 0, 1, 2, ...; "
    'names written to dataset.json as "class_names"); none = no labels.',
)
@click.option(
    "--resize-filter",
    type=click.Choice(sorted(RESIZE_FILTERS)),
    default="lanczos",
    show_default=True,
    help="Resampling filter. It changes FID: compare runs only on data made with the same filter; use box "
    "to downscale FFHQ-like data the way the official downsampled sets were made.",
)
def main(source, dest, max_images, resolution, transform, background, pad_colour, labels, resize_filter):
    """Convert images into a StyleGAN2-ADA training set (PNGs in 00000/img00000000.png + dataset.json).

    Greyscale-only sources give 1-channel PNGs, anything else RGB. RGBA, grey+alpha and palette images with
    transparency are composited over --background (white unless given); palettes are expanded; 16-bit images
    are scaled to 8 bits.

    \b
    Examples:
      python dataset_tool.py --source=~/cifar-10-python.tar.gz --dest=~/datasets/cifar10.zip
      python dataset_tool.py --source=~/emoji --dest=~/datasets/emoji32.zip --resolution=32x32 --resize-filter=box
      python dataset_tool.py --source=sklearn:digits --dest=~/datasets/digits32.zip
      python dataset_tool.py --source=~/att_faces --dest=~/datasets/faces64.zip --resolution=64x64 \\
          --transform=pad --labels=folders
    """
    try:
        convert_dataset(
            os.path.expanduser(source),
            os.path.expanduser(dest),
            resolution,
            transform,
            resize_filter,
            max_images,
            echo=click.echo,
            labels=labels,
            background=background,
            pad_colour=pad_colour,
        )
    except DatasetError as err:
        raise click.ClickException(str(err)) from None
