"""Test helpers that make damaged inputs the way they occur: a PNG whose header claims a huge size (PIL's
decompression-bomb guard fires at open), and a zip member whose bytes no longer match its CRC."""

from __future__ import annotations

import io
import pathlib
import zipfile
import zlib

import numpy as np
import PIL.Image


def png_claiming_size(width: int, height: int) -> bytes:
    """A valid 8x8 PNG whose IHDR says width x height (its chunk CRC fixed up): PIL reads the size at open."""
    buffer = io.BytesIO()
    PIL.Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(buffer, format="png")
    data = bytearray(buffer.getvalue())
    data[16:24] = width.to_bytes(4, "big") + height.to_bytes(4, "big")  # after the signature, length and 'IHDR'
    data[29:33] = zlib.crc32(bytes(data[12:29])).to_bytes(4, "big")
    return bytes(data)


def corrupt_stored_member(zip_path: pathlib.Path, member: str) -> None:
    """Flip one byte in the middle of a stored (uncompressed) member, so its CRC-32 no longer matches."""
    with zipfile.ZipFile(zip_path) as zf:
        info = zf.getinfo(member)
    assert info.compress_type == zipfile.ZIP_STORED, "only stored members can be damaged in place"
    data = bytearray(zip_path.read_bytes())
    header = info.header_offset
    name_len = int.from_bytes(data[header + 26 : header + 28], "little")
    extra_len = int.from_bytes(data[header + 28 : header + 30], "little")
    data[header + 30 + name_len + extra_len + info.compress_size // 2] ^= 0xFF
    zip_path.write_bytes(bytes(data))
