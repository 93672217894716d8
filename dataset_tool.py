"""Convert images into a training set: a zip (or folder) of PNGs in 00000/img00000000.png layout + dataset.json.

Same flags and output layout as StyleGAN2-ADA's dataset_tool.py. Differences: odd inputs (greyscale, RGBA,
palette, 16-bit, non-square, mixed sizes) are converted with a message instead of rejected, and the output
appears atomically (written under a temporary name, then renamed).
"""
from __future__ import annotations

import collections
import io
import json
import os
import shutil
import sys
import tempfile
import zipfile

import click
import PIL.Image
from tqdm import tqdm

from training.dataset import DatasetError
from training.dataset_sources import ImageSource, open_source
from training.image_convert import (DEFAULT_BACKGROUND, RESIZE_FILTERS, TRANSFORMS, center_crop_square,
                                    center_crop_wide, describe_conversion, resize_to, target_mode_for, to_mode)


def parse_resolution(text: str | None) -> tuple[int, int] | None:
    """'WxH' or 'N' -> (W, H)."""
    if text is None:
        return None
    parts = text.lower().split('x')
    try:
        width, height = (int(parts[0]), int(parts[-1])) if len(parts) in (1, 2) else (0, 0)
    except ValueError:
        width = height = 0
    if width < 1 or height < 1:
        raise click.BadParameter(f'expected WxH such as 256x256, got {text!r}', param_hint='--resolution')
    return width, height


def _is_pow2(n: int) -> bool:
    return n >= 4 and n & (n - 1) == 0


class ArchiveWriter:
    """Writes files into a zip or a folder under a temporary name; commit() renames it into place."""

    def __init__(self, dest: str):
        self.dest = dest
        self.is_zip = dest.lower().endswith('.zip')
        parent = os.path.dirname(os.path.abspath(dest))
        os.makedirs(parent, exist_ok=True)
        prefix = f'.{os.path.basename(dest)}.'
        if self.is_zip:
            if os.path.isdir(dest):
                raise DatasetError(f'--dest {dest}: is a folder, cannot write a zip there')
            fd, self.tmp = tempfile.mkstemp(dir=parent, prefix=prefix, suffix='.tmp')
            os.close(fd)
            self.zip = zipfile.ZipFile(self.tmp, 'w', compression=zipfile.ZIP_STORED)
        else:
            if os.path.exists(dest) and (not os.path.isdir(dest) or os.listdir(dest)):
                raise DatasetError(f'--dest {dest}: already exists and is not an empty folder; remove it or '
                                   'choose another --dest')
            self.tmp = tempfile.mkdtemp(dir=parent, prefix=prefix, suffix='.tmp')

    def write(self, fname: str, data: bytes) -> None:
        if self.is_zip:
            self.zip.writestr(fname, data)
        else:
            path = os.path.join(self.tmp, fname)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, 'wb') as file:
                file.write(data)

    def commit(self) -> None:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(self.tmp, (0o666 if self.is_zip else 0o777) & ~umask)  # mkstemp/mkdtemp made it private
        if self.is_zip:
            self.zip.close()
            os.replace(self.tmp, self.dest)
        else:
            if os.path.isdir(self.dest):
                os.rmdir(self.dest)  # empty (checked in __init__)
            os.replace(self.tmp, self.dest)

    def abort(self) -> None:
        if self.is_zip:
            self.zip.close()
            os.remove(self.tmp)
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)


def plan_output(source: ImageSource, count: int, resolution: tuple[int, int] | None, transform: str | None,
                echo=print) -> tuple[str, int, int]:
    """(target mode, output width, output height) from the image headers; echoes what will be converted."""
    kinds = collections.Counter()
    sizes = collections.Counter()
    for idx in range(count):
        mode, size, transparent = source.header(idx)
        kinds[(mode, transparent or mode in ('RGBA', 'LA', 'PA', 'RGBa', 'La'))] += 1
        sizes[size] += 1
    target = target_mode_for({mode for mode, _ in kinds})
    for (mode, transparent), n in sorted(kinds.items()):
        what = describe_conversion(mode, transparent, target)
        if what:
            echo(f'Converting {n} image(s): {what}.')
    if any(transparent for _, transparent in kinds):
        echo(f'Transparent pixels are composited over background RGB{DEFAULT_BACKGROUND} (white).')
    non_square = sum(n for (w, h), n in sizes.items() if w != h)
    if transform == 'center-crop-wide':
        if resolution is None:
            raise click.UsageError('--transform=center-crop-wide needs --resolution=WxH (e.g. 512x384)')
        width, height = resolution
        if not _is_pow2(width) or height > width:
            raise click.BadParameter(f'{width}x{height}: with center-crop-wide, W must be a power of two >= 4 and '
                                     'H <= W (the result is letterboxed to WxW)', param_hint='--resolution')
        return target, width, height
    if non_square:
        echo(f'Center-cropping {non_square} non-square image(s) to squares (use --transform=center-crop-wide '
             'with --resolution=WxH to keep a wide aspect instead).')
    if resolution is not None:
        width, height = resolution
        if width != height or not _is_pow2(width):
            raise click.BadParameter(f'{width}x{height}: the trainer needs a square power-of-two size such as 256x256',
                                     param_hint='--resolution')
        return target, width, height
    sides = {min(size) for size in sizes}
    side = min(sides)
    out = 1 << (side.bit_length() - 1)
    if len(sides) > 1 or out != side:
        echo(f'No --resolution given: the images are {"of mixed sizes" if len(sides) > 1 else f"{side}x{side}"}, '
             f'writing {out}x{out} (the largest power of two that fits the smallest image). '
             'Pass --resolution to choose.')
    if out < 4:
        raise DatasetError(f'images are too small ({side} px) for a training set; the minimum is 4x4')
    return target, out, out


def convert_image(image: PIL.Image.Image, target: str, width: int, height: int, transform: str | None,
                  resize_filter: str) -> PIL.Image.Image | None:
    """The output image (mode `target`, square), or None when center-crop-wide finds it too small."""
    image = to_mode(image, target)
    if transform == 'center-crop-wide':
        return center_crop_wide(image, width, height, resize_filter)
    return resize_to(center_crop_square(image), width, resize_filter)


def encode_png(image: PIL.Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format='png', compress_level=1)
    return buffer.getvalue()


def convert_dataset(source: str, dest: str, resolution: str | None = None, transform: str | None = None,
                    resize_filter: str = 'lanczos', max_images: int | None = None, echo=print,
                    progress: bool = True) -> int:
    """Convert `source` into `dest`; returns the number of images written. Raises DatasetError on bad input."""
    if resize_filter not in RESIZE_FILTERS:
        raise click.BadParameter(f'{resize_filter!r} is not one of {sorted(RESIZE_FILTERS)}', param_hint='--resize-filter')
    if transform is not None and transform not in TRANSFORMS:
        raise click.BadParameter(f'{transform!r} is not one of {TRANSFORMS}', param_hint='--transform')
    if max_images is not None and max_images < 1:
        raise click.BadParameter(f'must be >= 1, got {max_images}', param_hint='--max-images')
    src = open_source(source)
    try:
        count = len(src) if max_images is None else min(len(src), max_images)
        target, width, height = plan_output(src, count, parse_resolution(resolution), transform, echo)
        writer = ArchiveWriter(dest)
        try:
            labels, written, skipped = [], 0, []
            for idx in tqdm(range(count), desc='dataset_tool', unit='img', disable=not progress, file=sys.stderr):
                with src.open(idx) as image:
                    try:
                        image.load()
                        out = convert_image(image, target, width, height, transform, resize_filter)
                    except (OSError, SyntaxError, ValueError) as err:
                        raise DatasetError(f'{src.name(idx)}: cannot decode image ({err})') from None
                if out is None:
                    skipped.append(src.name(idx))
                    continue
                fname = f'{written // 1000:05d}/img{written:08d}.png'
                writer.write(fname, encode_png(out))
                if src.labels is not None:
                    labels.append([fname, src.labels[idx]])
                written += 1
            if skipped:
                echo(f'Skipped {len(skipped)} image(s) smaller than {width}x{height} for center-crop-wide, '
                     f'e.g. {skipped[0]}.')
            if written == 0:
                raise DatasetError(f'--source {source}: no image could be converted')
            meta = {'labels': labels if src.labels is not None else None}
            writer.write('dataset.json', json.dumps(meta).encode('utf-8'))
            writer.commit()
        except BaseException:
            writer.abort()
            raise
    finally:
        src.close()
    echo(f'Wrote {written} {target} image(s) of {width}x{width} to {dest}'
         f'{" with labels" if src.labels is not None else ""}.')
    return written


@click.command(context_settings=dict(help_option_names=['-h', '--help']))
@click.option('--source', required=True, metavar='PATH',
              help='Image folder (recursive) or zip, with optional dataset.json labels; the CIFAR-10 python archive '
                   '(cifar-10-python.tar.gz, or its extracted folder: the 50k training images); or sklearn:digits '
                   '(the embedded 32x32 digits).')
@click.option('--dest', required=True, metavar='PATH',
              help='Output: a .zip file (replaced atomically if present) or a new/empty folder.')
@click.option('--max-images', type=int, default=None, help='Convert at most this many images (in sorted order).')
@click.option('--resolution', metavar='WxH', default=None,
              help='Output size, e.g. 256x256 (a square power of two; center-crop-wide allows H < W). Default: the '
                   'images\' own size, or the largest power of two fitting the smallest image.')
@click.option('--transform', type=click.Choice(TRANSFORMS), default=None,
              help='center-crop: crop the centred square, then resize (non-square images get this anyway). '
                   'center-crop-wide: crop to the W:H aspect, resize to WxH, letterbox on black to WxW.')
@click.option('--resize-filter', type=click.Choice(sorted(RESIZE_FILTERS)), default='lanczos', show_default=True,
              help='Resampling filter. It changes FID: compare runs only on data made with the same filter; use box '
                   'to downscale FFHQ-like data the way the official downsampled sets were made.')
def main(source, dest, max_images, resolution, transform, resize_filter):
    """Convert images into a StyleGAN2-ADA training set (PNGs in 00000/img00000000.png + dataset.json).

    Greyscale-only sources give 1-channel PNGs, anything else RGB. RGBA, grey+alpha and palette images with
    transparency are composited over a white background; palettes are expanded; 16-bit images scaled to 8 bits.

    \b
    Examples:
      python dataset_tool.py --source=~/cifar-10-python.tar.gz --dest=~/datasets/cifar10.zip
      python dataset_tool.py --source=~/emoji --dest=~/datasets/emoji32.zip --resolution=32x32 --resize-filter=box
      python dataset_tool.py --source=sklearn:digits --dest=~/datasets/digits32.zip
    """
    try:
        convert_dataset(os.path.expanduser(source), os.path.expanduser(dest), resolution, transform, resize_filter,
                        max_images, echo=click.echo)
    except DatasetError as err:
        raise click.ClickException(str(err)) from None


if __name__ == '__main__':
    main()
