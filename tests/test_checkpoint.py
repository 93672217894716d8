"""Our snapshot format: exact round trips, weights-only contents, atomic writes and clear errors."""
from __future__ import annotations

import json
import os
import pickletools
import random
import signal
import struct
import subprocess
import sys
import textwrap
import time
import zipfile

import numpy as np
import pytest
import torch

from conftest import perturbed
from training import checkpoint
from training.checkpoint import CheckpointError, load_network, save_snapshot
from training.networks import Discriminator, Generator

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY_G = dict(z_dim=8, c_dim=3, w_dim=8, img_resolution=8, img_channels=3,
              mapping_kwargs=dict(num_layers=2), synthesis_kwargs=dict(channel_base=64, channel_max=8))
TINY_D = dict(c_dim=3, img_resolution=8, img_channels=3, channel_base=64, channel_max=8)
TRAINING_SET_KWARGS = dict(path="/data/digits.zip", use_labels=True, max_size=None, xflip=False, resolution=8)


@pytest.fixture
def nets():
    torch.manual_seed(1)
    G = perturbed(Generator(**TINY_G), 1)
    D = perturbed(Discriminator(**TINY_D), 2)
    G_ema = perturbed(Generator(**TINY_G), 3)
    return dict(G=G, D=D, G_ema=G_ema, augment_pipe=None)


@pytest.fixture
def snapshot(tmp_path, nets):
    path = tmp_path / "network-snapshot-000000.pt"
    save_snapshot(path, nets, training_set_kwargs=TRAINING_SET_KWARGS)
    return path


def outputs(nets):
    z = torch.randn([2, 8], generator=torch.Generator().manual_seed(5))
    c = torch.eye(3)[[0, 2]]
    img = nets["G_ema"](z, c, noise_mode="const")
    return img, nets["G"](z, c, noise_mode="const"), nets["D"](img, c)


def assert_same_state(a: torch.nn.Module, b: torch.nn.Module):
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for key in sa:
        assert sa[key].dtype == sb[key].dtype and torch.equal(sa[key], sb[key]), key


# ----------------------------------------------------------------------------
# Round trips.


def test_round_trip_gives_identical_state_and_outputs(snapshot, nets):
    loaded = load_network(snapshot)
    for name in ("G", "D", "G_ema"):
        assert type(loaded[name]) is type(nets[name]) and loaded[name] is not nets[name]
        assert loaded[name].init_kwargs == nets[name].init_kwargs
        assert_same_state(loaded[name], nets[name])
    assert loaded["augment_pipe"] is None
    assert loaded["training_set_kwargs"] == TRAINING_SET_KWARGS
    assert "resume_state" not in loaded
    with torch.no_grad():
        for expected, got in zip(outputs(nets), outputs(loaded)):
            assert torch.equal(expected, got)


def test_loaded_networks_are_frozen_eval_copies(snapshot):
    loaded = load_network(str(snapshot), device="cpu")
    for name in ("G", "D", "G_ema"):
        assert not loaded[name].training
        assert not any(p.requires_grad for p in loaded[name].parameters())


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_networks_and_resume_state_round_trip_through_cpu_file(tmp_path, nets):
    cuda_nets = {k: v.cuda() for k, v in nets.items() if v is not None}
    opt = torch.optim.Adam(cuda_nets["G"].parameters(), lr=0.01)
    for p in cuda_nets["G"].parameters():
        p.grad = torch.ones_like(p)
    opt.step()
    torch.cuda.manual_seed_all(4)
    rng = checkpoint.capture_rng_state()
    expected = torch.rand(3, device="cuda")
    path = tmp_path / "snap.pt"
    save_snapshot(path, cuda_nets, resume_state=dict(G_opt=opt.state_dict(), rng=rng))
    raw = torch.load(path, weights_only=True)
    assert all(t.device.type == "cpu" for t in raw["networks"]["G"]["state_dict"].values())
    loaded = load_network(path, device="cuda")
    assert all(p.is_cuda for p in loaded["G_ema"].parameters())
    for key, value in cuda_nets["G_ema"].state_dict().items():
        assert torch.equal(loaded["G_ema"].state_dict()[key], value), key
    checkpoint.restore_rng_state(loaded["resume_state"]["rng"])
    assert torch.equal(torch.rand(3, device="cuda"), expected)


def test_url_is_resolved_only_through_the_local_cache(snapshot, tmp_path, monkeypatch):
    from dnnlib import util
    url = "https://example.org/runs/network-snapshot-000000.pt"
    monkeypatch.setenv("RLO_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("DNNLIB_CACHE_DIR", str(tmp_path / "no_official_cache"))
    with pytest.raises(FileNotFoundError, match="downloads"):
        load_network(url)
    cached = util.cache_path_for_url(url)
    os.makedirs(os.path.dirname(cached))
    os.link(snapshot, cached)
    assert type(load_network(url)["G"]) is Generator


def test_augment_pipe_round_trip(tmp_path):
    augment = pytest.importorskip("training.augment")
    pipe = augment.AugmentPipe(**augment.AUGPIPE_SPECS["bgc"])
    with torch.no_grad():
        pipe.p.copy_(torch.tensor(0.37))
    path = tmp_path / "snap.pt"
    save_snapshot(path, dict(augment_pipe=pipe))
    loaded = load_network(path)["augment_pipe"]
    assert type(loaded) is type(pipe) and loaded.init_kwargs == pipe.init_kwargs
    assert_same_state(loaded, pipe)
    assert float(loaded.p) == pytest.approx(0.37)


def test_resume_state_restores_optimizer_counters_and_rngs(tmp_path, nets):
    G = nets["G"].train().requires_grad_(True)
    opt = torch.optim.Adam(G.parameters(), lr=0.01, betas=(0.0, 0.99))

    def step(module, optimizer):
        optimizer.zero_grad()
        module(torch.ones([2, 8]), torch.eye(3)[:2], noise_mode="const").square().mean().backward()
        optimizer.step()

    step(G, opt)
    random.seed(11), np.random.seed(12), torch.manual_seed(13)
    rng = checkpoint.capture_rng_state()
    expected_draws = (random.random(), np.random.rand(3), np.random.randn(), torch.rand(4))
    resume_state = dict(G_opt=opt.state_dict(), augment_p=0.25, cur_nimg=4096, cur_tick=3, rng=rng)
    path = tmp_path / "snap.pt"
    save_snapshot(path, dict(G=G), resume_state=resume_state)

    loaded = load_network(path)
    state = loaded["resume_state"]
    assert (state["augment_p"], state["cur_nimg"], state["cur_tick"]) == (0.25, 4096, 3)
    G2 = loaded["G"].train().requires_grad_(True)
    opt2 = torch.optim.Adam(G2.parameters(), lr=0.5)
    opt2.load_state_dict(state["G_opt"])
    assert opt2.param_groups[0]["lr"] == 0.01 and opt2.param_groups[0]["betas"] == (0.0, 0.99)
    step(G, opt)
    step(G2, opt2)
    assert_same_state(G, G2)

    random.seed(0), np.random.seed(0), torch.manual_seed(0)
    checkpoint.restore_rng_state(state["rng"])
    draws = (random.random(), np.random.rand(3), np.random.randn(), torch.rand(4))
    assert draws[0] == expected_draws[0] and draws[2] == expected_draws[2]
    assert np.array_equal(draws[1], expected_draws[1]) and torch.equal(draws[3], expected_draws[3])


def test_resume_state_refuses_values_weights_only_cannot_read(tmp_path, nets):
    path = tmp_path / "snap.pt"
    with pytest.raises(CheckpointError, match=r"resume_state\['aug'\]\['p'\] is a numpy.ndarray"):
        save_snapshot(path, dict(G=nets["G"]), resume_state=dict(aug=dict(p=np.zeros(3))))
    with pytest.raises(CheckpointError, match="fn"):
        save_snapshot(path, dict(G=nets["G"]), resume_state=dict(fn=print))
    assert not path.exists() and os.listdir(tmp_path) == []


def test_snapshot_pickle_references_only_tensor_rebuild_globals(snapshot):
    """The payload pickle names no class or function beyond torch's tensor rebuild helpers and containers."""
    with zipfile.ZipFile(snapshot) as archive:
        data_pkl = next(name for name in archive.namelist() if name.endswith("data.pkl"))
        ops = list(pickletools.genops(archive.read(data_pkl)))
    strings, names = [], set()
    for op, arg, _ in ops:
        if op.name in ("SHORT_BINUNICODE", "BINUNICODE", "UNICODE"):
            strings.append(arg)
        if op.name == "GLOBAL":
            names.add(arg.replace(" ", "."))
        if op.name == "STACK_GLOBAL":
            names.add(f"{strings[-2]}.{strings[-1]}")
    allowed = {"collections.OrderedDict", "torch._utils._rebuild_tensor_v2", "torch.FloatStorage"}
    assert names and names <= allowed, names - allowed


def test_zero_size_and_integer_buffers_round_trip(tmp_path, nets):
    G = nets["G"]
    G.synthesis.register_buffer("extra_count", torch.tensor([3, 4], dtype=torch.int64))
    path = tmp_path / "snap.pt"
    save_snapshot(path, dict(G=G))
    raw = torch.load(path, weights_only=True)
    assert torch.equal(raw["networks"]["G"]["state_dict"]["synthesis.extra_count"], torch.tensor([3, 4]))


# ----------------------------------------------------------------------------
# Errors.


def test_missing_file_names_the_path(tmp_path):
    path = tmp_path / "nothere.pt"
    with pytest.raises(FileNotFoundError, match="nothere.pt"):
        load_network(path)


@pytest.mark.parametrize("content, message", [
    (b"", "is empty"),
    (b"hello world, not a network", "neither an rlo-stylegan2 snapshot"),
])
def test_unrecognised_bytes_are_refused(tmp_path, content, message):
    path = tmp_path / "junk.pkl"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=message):
        load_network(path)


def test_plain_torch_state_dict_is_not_a_snapshot(tmp_path):
    path = tmp_path / "weights.pt"
    torch.save({"w": torch.zeros(2)}, path)
    with pytest.raises(CheckpointError, match="not an rlo-stylegan2 snapshot"):
        load_network(path)


def test_legacy_torch_save_is_named(tmp_path):
    path = tmp_path / "legacy.pt"
    torch.save({"w": torch.zeros(2)}, path, _use_new_zipfile_serialization=False)
    with pytest.raises(CheckpointError, match="legacy"):
        load_network(path)


class _CreatesFile:
    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (os.system, (f"touch {self.target}",))


def test_torch_file_with_pickled_code_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"format": checkpoint.SNAPSHOT_FORMAT, "version": 1, "x": _CreatesFile(marker)}, path)
    with pytest.raises(CheckpointError, match="never executed"):
        load_network(path)
    assert not marker.exists()


@pytest.mark.parametrize("fraction", [0.1, 0.5, 0.95])
def test_truncated_snapshot_gives_clear_error(snapshot, tmp_path, fraction):
    data = snapshot.read_bytes()
    path = tmp_path / "cut.pt"
    path.write_bytes(data[: int(len(data) * fraction)])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_network(path)


def test_flipped_byte_in_tensor_data_is_detected(snapshot, tmp_path):
    with zipfile.ZipFile(snapshot) as archive:
        tensors = [i for i in archive.infolist() if "/data/" in i.filename]
        info = max(tensors, key=lambda i: i.file_size)
    data = bytearray(snapshot.read_bytes())
    name_len, extra_len = struct.unpack_from("<HH", data, info.header_offset + 26)  # zip local file header
    data[info.header_offset + 30 + name_len + extra_len + info.file_size // 2] ^= 0x40
    path = tmp_path / "flipped.pt"
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="corrupt"):
        load_network(path)


def rewrite_payload(src, dst, edit):
    payload = torch.load(src, weights_only=True)
    edit(payload)
    torch.save(payload, dst)


def test_unknown_class_name_is_refused(snapshot, tmp_path):
    path = tmp_path / "edited.pt"
    rewrite_payload(snapshot, path, lambda p: p["networks"]["D"].update(class_name="os.system"))
    with pytest.raises(CheckpointError, match=r"\['D'\].*unknown network class 'os.system'.*Generator"):
        load_network(path)


def test_state_mismatch_names_network_and_keys(snapshot, tmp_path):
    def edit(payload):
        state = payload["networks"]["G_ema"]["state_dict"]
        del state["mapping.w_avg"]
        state["synthesis.bogus"] = torch.zeros(1)
        state["synthesis.b4.const"] = torch.zeros(1, 2)
    path = tmp_path / "edited.pt"
    rewrite_payload(snapshot, path, edit)
    with pytest.raises(CheckpointError) as info:
        load_network(path)
    message = str(info.value)
    for fragment in ("['G_ema']", "Generator", "missing keys [mapping.w_avg]", "unexpected keys [synthesis.bogus]",
                     "synthesis.b4.const: saved [1, 2] vs model [8, 4, 4]"):
        assert fragment in message


def test_bad_init_kwargs_name_the_network(snapshot, tmp_path):
    def edit(payload):
        kwargs = json.loads(payload["networks"]["D"]["init_kwargs_json"])
        payload["networks"]["D"]["init_kwargs_json"] = json.dumps(dict(kwargs, frobnicate=1))
    path = tmp_path / "edited.pt"
    rewrite_payload(snapshot, path, edit)
    with pytest.raises(CheckpointError, match=r"\['D'\]: cannot construct Discriminator.*frobnicate"):
        load_network(path)


def test_newer_snapshot_version_is_refused(snapshot, tmp_path):
    path = tmp_path / "edited.pt"
    rewrite_payload(snapshot, path, lambda p: p.update(version=checkpoint.SNAPSHOT_VERSION + 1))
    with pytest.raises(CheckpointError, match="snapshot version"):
        load_network(path)


def test_save_refuses_classes_outside_the_allowlist(tmp_path):
    with pytest.raises(CheckpointError, match=r"networks\['G'\] is a torch.nn.modules.linear.Linear"):
        save_snapshot(tmp_path / "s.pt", dict(G=torch.nn.Linear(2, 2)))


def test_save_refuses_non_json_training_set_kwargs(tmp_path, nets):
    with pytest.raises(CheckpointError, match="training_set_kwargs"):
        save_snapshot(tmp_path / "s.pt", dict(G=nets["G"]), training_set_kwargs=dict(path=object()))


# ----------------------------------------------------------------------------
# Atomicity.


def test_failed_write_keeps_previous_snapshot_and_leaves_no_temp(snapshot, nets, monkeypatch):
    before = snapshot.read_bytes()

    def partial_save(obj, f):
        f.write(b"PK\x03\x04 partial")
        raise OSError("disk full")

    monkeypatch.setattr(checkpoint.torch, "save", partial_save)
    with pytest.raises(OSError, match="disk full"):
        save_snapshot(snapshot, nets)
    monkeypatch.undo()
    assert snapshot.read_bytes() == before
    assert os.listdir(snapshot.parent) == [snapshot.name]
    assert_same_state(load_network(snapshot)["G"], nets["G"])


def test_overwrite_replaces_content(snapshot, nets):
    nets2 = dict(nets, G=perturbed(Generator(**TINY_G), 9))
    save_snapshot(snapshot, nets2)
    assert_same_state(load_network(snapshot)["G"], nets2["G"])
    assert os.listdir(snapshot.parent) == [snapshot.name]


def test_killed_writer_never_leaves_a_damaged_snapshot(snapshot, nets, tmp_path):
    """SIGKILL a process in the middle of save_snapshot; the old snapshot must still load unchanged."""
    marker = tmp_path / "writing"
    script = textwrap.dedent(f"""
        import os, sys, time, torch
        sys.path.insert(0, {REPO!r})
        from training import checkpoint
        from training.networks import Generator
        real_fsync = os.fsync
        def slow_fsync(fd):
            real_fsync(fd)
            open({str(marker)!r}, "w").close()   # temp file written, not yet renamed
            time.sleep(60)
        os.fsync = slow_fsync
        G = Generator(**{TINY_G!r})
        checkpoint.save_snapshot({str(snapshot)!r}, dict(G=G))
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], env=dict(os.environ, OMP_NUM_THREADS="1"))
    try:
        deadline = time.monotonic() + 120
        while not marker.exists():
            assert proc.poll() is None, "writer exited before reaching the write"
            assert time.monotonic() < deadline, "writer never reached the write"
            time.sleep(0.05)
        temps = [n for n in os.listdir(snapshot.parent) if n.endswith(".tmp")]
        assert temps, "the new snapshot should be written to a temporary file first"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    loaded = load_network(snapshot)
    assert_same_state(loaded["G"], nets["G"])


def test_atomic_write_verify_failure_keeps_previous(tmp_path):
    path = tmp_path / "out.bin"
    path.write_bytes(b"old")

    def verify(tmp):
        raise CheckpointError("bad")

    with pytest.raises(CheckpointError):
        checkpoint.atomic_write(path, lambda f: f.write(b"new"), verify=verify)
    assert path.read_bytes() == b"old" and os.listdir(tmp_path) == ["out.bin"]
    checkpoint.atomic_write(path, lambda f: f.write(b"new"))
    assert path.read_bytes() == b"new"
