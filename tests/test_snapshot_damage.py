"""Every damaged copy of a snapshot loads exactly the original tensors and values, or raises one CheckpointError.

A tiny snapshot (a 4x4 generator plus resume state) has every byte of its zip headers flipped: the local file
headers, the central directory and the end-of-central-directory record, and a sample of its data bytes. Each copy
is loaded; the outcome must be a result equal to the undamaged one in every tensor (dtype and bytes) and value, or
a one-line CheckpointError naming the file. The default run flips a sample of the header bytes (a few seconds);
`pytest -m slow` flips every header byte with four masks, every data byte, and truncates at every length.
"""

from __future__ import annotations

import struct
import zipfile

import pytest
import torch
from conftest import perturbed, tiny_g

from training.checkpoint import CheckpointError, load_network, save_snapshot
from training.networks import Generator

TINY_G = tiny_g(4, latent=4, base=16, cmax=4, layers=1)


@pytest.fixture(scope="module")
def snapshot(tmp_path_factory):
    path = tmp_path_factory.mktemp("damage") / "network-snapshot-000000.pt"
    torch.manual_seed(0)
    G = perturbed(Generator(**TINY_G), 1)
    resume_state = dict(cur_nimg=64, moments=torch.arange(6.0), counts=torch.tensor([3, 4], dtype=torch.int64))
    save_snapshot(
        path, dict(G=G), training_set_kwargs=dict(path="/data/x.zip", resolution=4), resume_state=resume_state
    )
    return path


def regions(path) -> dict[str, list[int]]:
    """Byte offsets of the local headers, the central directory, the end record and the tensor data."""
    data = path.read_bytes()
    out: dict[str, list[int]] = {"local": [], "data": []}
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            name_len, extra_len = struct.unpack_from("<HH", data, info.header_offset + 26)
            body = info.header_offset + 30 + name_len + extra_len
            out["local"] += range(info.header_offset, body)
            if "/data/" in info.filename:
                out["data"] += range(body, body + info.file_size)
        end = data.rfind(b"PK\x05\x06")
        out["central"] = list(range(archive.start_dir, end))
        out["end"] = list(range(end, len(data)))
    return out


def same(a, b) -> bool:
    """Equal results of load_network: modules by state (dtype and bytes), tensors exactly, other values by ==."""
    if isinstance(a, torch.nn.Module) or isinstance(b, torch.nn.Module):
        return type(a) is type(b) and same(a.state_dict(), b.state_dict())
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return (
            isinstance(a, torch.Tensor)
            and isinstance(b, torch.Tensor)
            and a.dtype == b.dtype
            and a.shape == b.shape
            and torch.equal(a, b)
        )
    if isinstance(a, dict) and isinstance(b, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


def check_damaged_copies(snapshot, tmp_path, edits) -> None:
    """Load each edited copy; collect every outcome that is neither the original result nor one CheckpointError."""
    original = load_network(snapshot)
    data = snapshot.read_bytes()
    path = tmp_path / "damaged.pt"
    wrong = []
    for label, edit in edits:
        path.write_bytes(edit(bytearray(data)))
        try:
            loaded = load_network(path)
        except CheckpointError as exc:
            text = str(exc)
            if str(path) not in text or "\n" in text or len(text) > 1000:
                wrong.append(f"{label}: CheckpointError without the file in one line: {text[:200]}")
            continue
        except Exception as exc:  # noqa: BLE001 - exactly what this test is looking for
            wrong.append(f"{label}: {type(exc).__name__}: {str(exc)[:200]}")
            continue
        if not same(loaded, original):
            wrong.append(f"{label}: loaded different tensors or values")
    assert not wrong, f"{len(wrong)} of {len(edits)} damaged copies escaped: " + "; ".join(wrong[:10])


def flips(offsets, masks=(0x01,)):
    def flip(offset, mask):
        def edit(data):
            data[offset] ^= mask
            return bytes(data)

        return f"byte {offset} ^ {mask:#04x}", edit

    return [flip(o, m) for o in offsets for m in masks]


def test_snapshot_regions_are_what_the_tests_flip(snapshot):
    r = regions(snapshot)
    assert len(r["end"]) == 22 and r["central"] and r["data"]
    assert len(set(r["local"]) | set(r["central"]) | set(r["end"]) | set(r["data"])) == len(r["local"]) + len(
        r["central"]
    ) + len(r["end"]) + len(r["data"])


def test_flipped_header_bytes_load_identical_or_refuse(snapshot, tmp_path):
    r = regions(snapshot)
    first = {"local": r["local"][:30], "central": r["central"][:46]}  # data.pkl's entries: the payload pickle
    offsets = sorted(
        set(r["end"])
        | set(first["local"])
        | set(first["central"])
        | set(r["local"][::17])
        | set(r["central"][::17])
        | set(r["data"][::31])
    )
    check_damaged_copies(snapshot, tmp_path, flips(offsets, masks=(0x01, 0x80)))


@pytest.mark.slow
def test_every_flipped_header_byte_loads_identical_or_refuses(snapshot, tmp_path):
    r = regions(snapshot)
    check_damaged_copies(
        snapshot, tmp_path, flips(r["local"] + r["central"] + r["end"], masks=(0x01, 0x10, 0x80, 0xFF))
    )


@pytest.mark.slow
def test_every_flipped_data_byte_and_every_truncation_loads_identical_or_refuses(snapshot, tmp_path):
    size = snapshot.stat().st_size
    truncations = [(f"first {n} bytes", lambda data, n=n: bytes(data[:n])) for n in range(0, size, 7)]
    check_damaged_copies(snapshot, tmp_path, flips(regions(snapshot)["data"]) + truncations)
