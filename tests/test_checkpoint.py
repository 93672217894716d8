"""Our snapshot format: exact round trips, weights-only contents, atomic writes and clear errors."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import pickletools
import random
import re
import signal
import struct
import subprocess
import sys
import tempfile
import textwrap
import time
import zipfile

import numpy as np
import pytest
import torch
from conftest import perturbed, tiny_d, tiny_g

from dnnlib import files
from training import checkpoint
from training.checkpoint import CheckpointError, load_network, save_snapshot
from training.networks import Discriminator, Generator

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY_G = tiny_g(8, c_dim=3)
TINY_D = tiny_d(8, c_dim=3)
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


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "is empty"),
        (b"hello world, not a network", "neither an rlo-stylegan2 snapshot"),
    ],
)
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


def flip_in_largest_record(src, dst, mask=0x40):
    """Copy of snapshot `src` with one bit flipped in the middle of its largest tensor record."""
    with zipfile.ZipFile(src) as archive:
        tensors = [i for i in archive.infolist() if "/data/" in i.filename]
        info = max(tensors, key=lambda i: i.file_size)
    data = bytearray(src.read_bytes())
    name_len, extra_len = struct.unpack_from("<HH", data, info.header_offset + 26)  # zip local file header
    data[info.header_offset + 30 + name_len + extra_len + info.file_size // 2] ^= mask
    dst.write_bytes(bytes(data))
    return dst


def test_flipped_byte_in_tensor_data_is_detected_and_names_the_tensor(tmp_path, nets):
    snapshot = tmp_path / "g.pt"
    save_snapshot(snapshot, dict(G=nets["G"]))
    path = flip_in_largest_record(snapshot, tmp_path / "flipped.pt")
    with pytest.raises(CheckpointError) as info:
        load_network(path)
    named = re.fullmatch(
        rf"{re.escape(str(path))} is corrupt: tensor \['networks'\]\['G'\]\['state_dict'\]"
        rf"\['([^']+)'\] fails its sha256 digest",
        str(info.value),
    )
    assert named, str(info.value)
    sizes = {k: v.numel() for k, v in nets["G"].state_dict().items()}
    assert sizes[named.group(1)] == max(sizes.values())


def rewrite_payload(src, dst, edit, redigest=True):
    """A hand-edited snapshot; redigest=True gives it valid digests, as a deliberately crafted file would have."""
    payload = torch.load(src, weights_only=True)
    edit(payload)
    if redigest:
        payload["digests"] = checkpoint.tensor_digests(payload)
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
    for fragment in (
        "['G_ema']",
        "Generator",
        "missing keys [mapping.w_avg]",
        "unexpected keys [synthesis.bogus]",
        "synthesis.b4.const: saved [1, 2] vs model [8, 4, 4]",
    ):
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
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(checkpoint.torch, "save", partial_save)
    with pytest.raises(
        CheckpointError,
        match=f"could not write {re.escape(str(snapshot))}: Input/output error; the previous {snapshot.name} is intact",
    ):
        save_snapshot(snapshot, nets, overwrite=True)
    monkeypatch.undo()
    assert snapshot.read_bytes() == before
    assert os.listdir(snapshot.parent) == [snapshot.name]
    assert_same_state(load_network(snapshot)["G"], nets["G"])


def test_overwrite_replaces_content_only_when_asked(snapshot, nets):
    nets2 = dict(nets, G=perturbed(Generator(**TINY_G), 9))
    with pytest.raises(CheckpointError, match="already exists; refusing to replace it"):
        save_snapshot(snapshot, nets2)  # the default: a run never replaces one of its snapshots
    assert_same_state(load_network(snapshot)["G"], nets["G"])
    save_snapshot(snapshot, nets2, overwrite=True)
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
        checkpoint.save_snapshot({str(snapshot)!r}, dict(G=G), overwrite=True)
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
    assert files.remove_stale_temp_files(snapshot.parent) == sorted(str(snapshot.parent / n) for n in temps)
    assert sorted(os.listdir(snapshot.parent)) == sorted([snapshot.name, marker.name])


def test_atomic_write_verify_failure_keeps_previous(tmp_path):
    path = tmp_path / "out.bin"
    path.write_bytes(b"old")

    def verify(tmp):
        raise CheckpointError("bad")

    with pytest.raises(CheckpointError):
        files.atomic_write(path, lambda f: f.write(b"new"), verify=verify)
    assert path.read_bytes() == b"old" and os.listdir(tmp_path) == ["out.bin"]
    files.atomic_write(path, lambda f: f.write(b"new"))
    assert path.read_bytes() == b"new"


# ----------------------------------------------------------------------------
# Digests.


def tensors_by_path(tree, path=""):
    """Every tensor of a payload under the path its digest is filed by (a walk independent of checkpoint's)."""
    if isinstance(tree, torch.Tensor):
        return {path: tree}
    items = tree.items() if isinstance(tree, dict) else enumerate(tree) if isinstance(tree, (list, tuple)) else []
    out = {}
    for key, value in items:
        out.update(tensors_by_path(value, f"{path}[{key!r}]"))
    return out


def sha256_of(tensor):
    t = tensor.contiguous()
    return hashlib.sha256(f"{t.dtype}{list(t.shape)}".encode() + t.numpy().tobytes()).hexdigest()


def adam_state(module, steps=1):
    module = module.train().requires_grad_(True)
    opt = torch.optim.Adam(module.parameters(), lr=0.01, betas=(0.0, 0.99))
    for _ in range(steps):
        for p in module.parameters():
            p.grad = torch.randn_like(p)
        opt.step()
    module.requires_grad_(False).eval()
    return opt.state_dict()


@pytest.fixture
def full_snapshot(tmp_path, nets):
    """A snapshot with the resume_state training_loop.gather_resume_state writes (Adam moments included)."""
    resume_state = dict(
        version=1,
        cur_nimg=4096,
        cur_tick=3,
        batch_idx=7,
        G_opt=adam_state(nets["G"]),
        D_opt=adam_state(nets["D"]),
        pl_mean=torch.tensor(0.25),
        ada=None,
        latent_gen=torch.Generator().manual_seed(3).get_state(),
        rng=[checkpoint.capture_rng_state()],
        training_options_json="{}",
    )
    path = tmp_path / "network-snapshot-000004.pt"
    save_snapshot(path, nets, training_set_kwargs=TRAINING_SET_KWARGS, resume_state=resume_state)
    return path


def test_snapshot_holds_a_sha256_digest_of_every_tensor_including_resume_state(full_snapshot):
    raw = torch.load(full_snapshot, weights_only=True)
    assert raw["version"] == checkpoint.SNAPSHOT_VERSION == 2
    expected = {p: sha256_of(t) for p, t in tensors_by_path({k: v for k, v in raw.items() if k != "digests"}).items()}
    assert raw["digests"]["algorithm"] == "sha256" and raw["digests"]["tensors"] == expected
    assert "['networks']['G']['state_dict']['mapping.fc0.weight']" in expected
    assert "['resume_state']['G_opt']['state'][0]['exp_avg_sq']" in expected
    assert "['resume_state']['rng'][0]['torch']" in expected


def test_damaged_resume_state_tensor_is_named(tmp_path, nets):
    snapshot = tmp_path / "snap.pt"
    save_snapshot(snapshot, dict(G=nets["G"]), resume_state=dict(moments=torch.arange(20000.0)))  # the largest
    path = flip_in_largest_record(snapshot, tmp_path / "flipped.pt", mask=0x01)
    with pytest.raises(CheckpointError, match=r"is corrupt: tensor \['resume_state'\]\['moments'\] fails its sha256"):
        load_network(path)


def cd_entries(data: bytes, archive_path):
    """{member name: offset of its central-directory entry}."""
    with zipfile.ZipFile(archive_path) as archive:
        pos, out = archive.start_dir, {}
        for info in archive.infolist():
            assert data[pos : pos + 4] == b"PK\x01\x02"
            name_len, extra_len, comment_len = struct.unpack_from("<HHH", data, pos + 28)
            out[info.filename] = pos
            pos += 46 + name_len + extra_len + comment_len
    return out


def test_directory_flag_flip_in_the_central_directory_loads_identical_or_refuses(tmp_path, nets):
    """The issue's case: the MS-DOS directory attribute of a tensor's entry; CRCs pass, and plain torch.load
    returns without error a tensor whose storage it never filled. What that storage holds is whatever the allocator
    handed back: usually not the weights, but in one CI run exactly them (a reused buffer), so the test asserts only
    the silence, and that our loader gives the saved weights or refuses."""
    snapshot = tmp_path / "g.pt"
    save_snapshot(snapshot, dict(G=nets["G"]))
    data = bytearray(snapshot.read_bytes())
    with zipfile.ZipFile(snapshot) as archive:
        largest = max(
            (i for i in archive.infolist() if re.search(r"/data/\d+$", i.filename)), key=lambda i: i.file_size
        )
    data[cd_entries(data, snapshot)[largest.filename] + 38] ^= 0x10  # external attributes, FILE_ATTRIBUTE_DIRECTORY
    path = tmp_path / "flagged.pt"
    path.write_bytes(bytes(data))
    with zipfile.ZipFile(path) as archive:
        assert archive.testzip() is None  # the CRC check alone passes
    plain = torch.load(path, weights_only=True)["networks"]["G"]["state_dict"]  # the hazard: no error
    assert set(plain) == set(nets["G"].state_dict())
    try:
        loaded = load_network(path)
    except CheckpointError as exc:
        assert str(path) in str(exc)
    else:
        assert_same_state(loaded["G"], nets["G"])


def test_content_edited_without_new_digests_is_refused(snapshot, tmp_path):
    path = tmp_path / "edited.pt"
    rewrite_payload(
        snapshot, path, lambda p: p.update(training_set_kwargs_json='{"path": "/elsewhere"}'), redigest=False
    )
    with pytest.raises(CheckpointError, match=r"edited\.pt is corrupt: its non-tensor content .* fails its digest"):
        load_network(path)
    rewrite_payload(snapshot, path, lambda p: p["networks"]["D"]["state_dict"]["b4.out.bias"].add_(1), redigest=False)
    with pytest.raises(CheckpointError, match=r"tensor \['networks'\]\['D'\]\['state_dict'\]\['b4.out.bias'\] fails"):
        load_network(path)
    rewrite_payload(snapshot, path, lambda p: p["digests"]["tensors"].popitem(), redigest=False)
    with pytest.raises(CheckpointError, match=r"tensors \[.*\] \(1\) have no digest"):
        load_network(path)


def as_version_1(src, dst):
    def edit(payload):
        del payload["digests"]
        payload["version"] = 1

    rewrite_payload(src, dst, edit, redigest=False)
    return dst


def test_version_1_snapshot_loads_with_a_one_line_warning(snapshot, nets, tmp_path, capsys):
    path = as_version_1(snapshot, tmp_path / "v1.pt")
    capsys.readouterr()
    loaded = load_network(path)
    for name in ("G", "D", "G_ema"):
        assert_same_state(loaded[name], nets[name])
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"Warning: {path} is a version-1 snapshot without digests")


def test_version_1_snapshot_damage_is_still_caught_by_its_crcs(snapshot, tmp_path):
    path = flip_in_largest_record(as_version_1(snapshot, tmp_path / "v1.pt"), tmp_path / "v1-flipped.pt")
    with pytest.raises(CheckpointError, match=r"v1-flipped\.pt is corrupt: an archive member fails its CRC check"):
        load_network(path)


# ----------------------------------------------------------------------------
# Hostile init kwargs: refused with the key and value before anything is built.


@pytest.fixture
def built_modules(monkeypatch):
    """Names of the torch modules constructed while the test runs."""
    built = []
    real_init = torch.nn.Module.__init__

    def spy(self, *args, **kwargs):
        built.append(type(self).__name__)
        real_init(self, *args, **kwargs)

    monkeypatch.setattr(torch.nn.Module, "__init__", spy)
    return built


HOSTILE_KWARGS = [
    ("G", "z_dim", 4_000_000, r"Generator kwarg z_dim=4000000 is out of bounds; expected an integer in \[0, 16384\]"),
    ("G", "z_dim", 2**40, r"z_dim=1099511627776 is out of bounds"),
    ("G", "w_dim", "8", r"w_dim='8' is out of bounds"),
    ("G", "c_dim", True, r"c_dim=True is out of bounds"),
    ("G", "img_resolution", 48, r"img_resolution=48 is out of bounds; expected a power of two"),
    ("G", "img_resolution", 2**30, r"img_resolution=1073741824 is out of bounds"),
    ("G", "img_channels", 0, r"img_channels=0 is out of bounds"),
    ("G", "mapping_kwargs", dict(num_layers=10**6), r"kwarg mapping_kwargs.num_layers=1000000 is out of bounds"),
    (
        "G",
        "synthesis_kwargs",
        dict(channel_base=2**24, channel_max=16384),
        r"Generator kwargs describe [\d,]+ parameter and buffer elements, more than the limit of 2,000,000,000",
    ),
    (
        "G",
        "synthesis_kwargs",
        dict(resample_filter=[1] * 100_000),
        r"synthesis_kwargs.resample_filter=\[1, 1, 1, 1, \.\.\.\]",
    ),
    ("G", "synthesis_kwargs", dict(num_fp16_res=-1), r"synthesis_kwargs.num_fp16_res=-1 is out of bounds"),
    ("G", "synthesis_kwargs", dict(channel_base=4), r"channel_base=4 gives 0 channels at img_resolution=8"),
    ("G", "synthesis_kwargs", dict(up=2), r"unknown kwarg 'synthesis_kwargs.up'"),
    ("G", "extra", {"deeply": {"nested": 1}}, r"got an unexpected keyword argument 'extra'"),
    (
        "D",
        "architecture",
        "bogus",
        r"architecture='bogus' is out of bounds; expected one of \['orig', 'skip', 'resnet'\]",
    ),
    ("D", "conv_clamp", float("inf"), r"conv_clamp=inf is out of bounds"),
    ("D", "channel_max", 10**9, r"channel_max=1000000000 is out of bounds"),
    ("D", "cmap_dim", 0, r"cmap_dim=0 is out of bounds"),
    ("D", "block_kwargs", [1, 2], r"Discriminator block_kwargs is a list, not a dict"),
    ("D", "epilogue_kwargs", dict(mbstd_group_size=2**40), r"epilogue_kwargs.mbstd_group_size=1099511627776"),
    ("D", "epilogue_kwargs", dict(bogus=1), r"unknown kwarg 'epilogue_kwargs.bogus' \(= 1\)"),
]


@pytest.mark.parametrize(
    "name, key, value, message", HOSTILE_KWARGS, ids=[f"{n}.{k}={str(v)[:20]}" for n, k, v, _ in HOSTILE_KWARGS]
)
def test_hostile_init_kwargs_are_refused_before_anything_is_built(
    tmp_path, nets, built_modules, name, key, value, message
):
    snapshot = tmp_path / "one.pt"
    save_snapshot(snapshot, {name: nets[name]})
    path = tmp_path / "hostile.pt"

    def edit(payload):
        entry = payload["networks"][name]
        entry["init_kwargs_json"] = json.dumps(dict(json.loads(entry["init_kwargs_json"]), **{key: value}))

    rewrite_payload(snapshot, path, edit)
    del built_modules[:]
    start = time.monotonic()
    with pytest.raises(CheckpointError) as info:
        load_network(path)
    assert time.monotonic() - start < 5
    text = str(info.value)
    assert text.startswith(f"{path}['{name}']") and re.search(message, text), text
    assert "\n" not in text and len(text) <= 1000
    assert built_modules == []


def test_state_far_smaller_than_its_kwargs_is_refused_before_building(tmp_path, nets, built_modules):
    """Kwargs within the limit but for a 0.3e9-element network, with the tiny state of another one."""
    snapshot = tmp_path / "one.pt"
    save_snapshot(snapshot, dict(G=nets["G"]))
    path = tmp_path / "hostile.pt"

    def edit(payload):
        kwargs = json.loads(payload["networks"]["G"]["init_kwargs_json"])
        kwargs["synthesis_kwargs"].update(channel_base=2**16, channel_max=2048)
        payload["networks"]["G"]["init_kwargs_json"] = json.dumps(kwargs)

    rewrite_payload(snapshot, path, edit)
    del built_modules[:]
    with pytest.raises(
        CheckpointError,
        match=r"\['G'\] \(Generator\): the saved state holds [\d,]+ elements but its "
        r"kwargs describe a network of [\d,]+; refusing to build it",
    ):
        load_network(path)
    assert built_modules == []


def test_deeply_nested_payload_is_refused(tmp_path, nets):
    snapshot = tmp_path / "one.pt"
    save_snapshot(snapshot, dict(G=nets["G"]))
    deep: list = []
    for _ in range(200):
        deep = [deep]
    path = tmp_path / "deep.pt"
    rewrite_payload(snapshot, path, lambda p: p.update(resume_state=dict(x=deep)), redigest=False)
    with pytest.raises(CheckpointError, match=r"deep\.pt.*nests containers more than 32 deep"):
        load_network(path)


def test_load_reports_each_networks_init_kwargs(snapshot, nets):
    loaded = load_network(snapshot)
    assert loaded["init_kwargs"] == {
        "G": nets["G"].init_kwargs,
        "D": nets["D"].init_kwargs,
        "G_ema": nets["G_ema"].init_kwargs,
        "augment_pipe": None,
    }
    fresh = Generator(**loaded["init_kwargs"]["G"])
    assert [tuple(t.shape) for t in fresh.state_dict().values()] == [
        tuple(t.shape) for t in nets["G"].state_dict().values()
    ]
    assert checkpoint.describe_kwargs_mismatch(loaded["init_kwargs"]["G"], TINY_G, "Generator") == ""
    assert (
        checkpoint.describe_kwargs_mismatch(loaded["init_kwargs"]["G"], dict(TINY_G, img_resolution=16), "Generator")
        == "img_resolution 8 (saved) vs 16 (run)"
    )


# ----------------------------------------------------------------------------
# A full disk, a read-only folder: one line, the previous file intact, no temp file left.


class FillsUp:
    """A file that takes `capacity` bytes, then fails as a full disk does."""

    def __init__(self, file, capacity):
        self.file, self.left = file, capacity

    def write(self, data):
        if len(data) > self.left:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.left -= len(data)
        return self.file.write(data)

    def flush(self):
        self.file.flush()


def test_torch_save_on_a_full_disk_raises_its_enforce_runtime_error(tmp_path):
    """The premise of the next test: torch turns the OSError into an 'enforce fail' RuntimeError."""
    with open(tmp_path / "x.pt", "wb") as f, pytest.raises(RuntimeError, match="enforce fail|write") as info:
        torch.save({"w": torch.zeros(10000)}, FillsUp(f, 1000))
    assert isinstance(info.value.__context__, OSError) and info.value.__context__.errno == errno.ENOSPC


def assert_only(folder, names):
    assert sorted(os.listdir(folder)) == sorted(names)


def test_disk_full_while_saving_is_one_line_and_keeps_the_previous_snapshot(snapshot, nets, monkeypatch):
    before = snapshot.read_bytes()
    real_save = torch.save
    monkeypatch.setattr(checkpoint.torch, "save", lambda obj, f: real_save(obj, FillsUp(f, 4096)))
    with pytest.raises(CheckpointError) as info:
        save_snapshot(snapshot, nets, overwrite=True)
    monkeypatch.undo()
    mb = sum(t.numel() * 4 for n in ("G", "D", "G_ema") for t in nets[n].state_dict().values()) / 2**20
    assert re.fullmatch(
        rf"no space left on device while writing {re.escape(str(snapshot))} \(needed ~(\d+) MB\); "
        rf"the previous {snapshot.name} is intact",
        str(info.value),
    )
    assert int(re.search(r"~(\d+) MB", str(info.value)).group(1)) == max(round(mb), 1)
    assert snapshot.read_bytes() == before
    assert_only(snapshot.parent, [snapshot.name])


def test_disk_full_at_fsync_or_reported_only_by_torch_is_named_too(tmp_path, nets, monkeypatch):
    path = tmp_path / "new.pt"
    real_fsync = os.fsync

    def full_fsync(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full_fsync)
    with pytest.raises(
        CheckpointError, match=r"^no space left on device while writing .*new\.pt .*nothing was written$"
    ):
        save_snapshot(path, dict(G=nets["G"]))
    monkeypatch.setattr(os, "fsync", real_fsync)
    assert_only(tmp_path, [])

    def enforce_fail(obj, f):  # as torch reports it when the OSError is not chained
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598")

    monkeypatch.setattr(checkpoint.torch, "save", enforce_fail)
    monkeypatch.setattr(files, "_free_bytes", lambda directory: 1000)
    with pytest.raises(CheckpointError, match=r"^no space left on device while writing"):
        save_snapshot(path, dict(G=nets["G"]))
    assert_only(tmp_path, [])


@pytest.mark.parametrize("code, words", [(errno.EROFS, "read-only file system"), (errno.EACCES, "permission denied")])
def test_unwritable_folder_is_named_in_one_line(tmp_path, nets, monkeypatch, code, words):
    def refuse(*args, **kwargs):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(files.tempfile, "mkstemp", refuse)
    with pytest.raises(
        CheckpointError,
        match=rf"^cannot write to folder {re.escape(str(tmp_path))}: {words}; "
        rf"nothing was written$",
    ):
        save_snapshot(tmp_path / "new.pt", dict(G=nets["G"]))
    assert_only(tmp_path, [])


def test_chmod_read_only_folder_is_named(tmp_path, nets):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        if os.access(folder, os.W_OK):
            pytest.skip("chmod does not stop this user (root) from writing; the monkeypatched test covers it")
        with pytest.raises(CheckpointError, match=rf"cannot write to folder {re.escape(str(folder))}: permission"):
            save_snapshot(folder / "new.pt", dict(G=nets["G"]))
        assert_only(folder, [])
    finally:
        folder.chmod(0o755)


# ----------------------------------------------------------------------------
# Never replacing a different file.


def test_overwrite_false_refuses_an_existing_snapshot(snapshot, nets):
    before = snapshot.read_bytes()
    with pytest.raises(CheckpointError, match=rf"^{re.escape(str(snapshot))} already exists; refusing to replace it"):
        save_snapshot(snapshot, dict(G=perturbed(Generator(**TINY_G), 9)), overwrite=False)
    assert snapshot.read_bytes() == before
    assert_only(snapshot.parent, [snapshot.name])


def test_overwrite_false_writes_a_new_file(tmp_path, nets):
    path = tmp_path / "new.pt"
    save_snapshot(path, dict(G=nets["G"]), overwrite=False)
    assert_same_state(load_network(path)["G"], nets["G"])
    assert_only(tmp_path, ["new.pt"])
    assert path.stat().st_mode & 0o777 == 0o644


def test_overwrite_false_is_atomic_against_a_file_appearing_during_the_write(tmp_path):
    path = tmp_path / "out.bin"

    def write(f):
        f.write(b"mine")
        path.write_bytes(b"another writer's")  # appears after the up-front check

    with pytest.raises(files.FileWriteError, match="already exists; refusing to replace it"):
        files.atomic_write(path, write, overwrite=False)
    assert path.read_bytes() == b"another writer's"
    assert_only(tmp_path, ["out.bin"])


def test_overwrite_false_without_hard_links_falls_back_to_a_check(tmp_path, monkeypatch):
    def no_links(src, dst):
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_links)
    path = tmp_path / "out.bin"
    files.atomic_write(path, lambda f: f.write(b"first"), overwrite=False)
    assert path.read_bytes() == b"first"
    with pytest.raises(files.FileWriteError, match="already exists"):
        files.atomic_write(path, lambda f: f.write(b"second"), overwrite=False)
    assert path.read_bytes() == b"first"
    assert_only(tmp_path, ["out.bin"])


# ----------------------------------------------------------------------------
# Leftover temp files of killed writers.


def test_remove_stale_temp_files_removes_only_atomic_write_leftovers(tmp_path):
    leftovers = []
    for _ in range(3):  # the names atomic_write's own mkstemp call makes
        fd, name = tempfile.mkstemp(prefix=".network-snapshot-000004.pt.", suffix=".tmp", dir=tmp_path)
        os.close(fd)
        leftovers.append(name)
    keep = [
        "network-snapshot-000004.pt",
        ".network-snapshot-000004.pt.tmp",
        "snap.pt.abcd1234.tmp",
        ".snap.pt.ABCD1234.tmp",
        ".snap.pt.abcd1234.tmp.bak",
        ".snap.pt.abc123.tmp",
        "notes.tmp",
    ]
    for name in keep:
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / ".folder.abcd1234.tmp").mkdir()
    os.symlink(tmp_path / "notes.tmp", tmp_path / ".link.abcd1234.tmp")
    assert files.remove_stale_temp_files(tmp_path) == sorted(leftovers)
    assert_only(tmp_path, keep + [".folder.abcd1234.tmp", ".link.abcd1234.tmp"])
    assert files.remove_stale_temp_files(tmp_path / "missing") == []


# ----------------------------------------------------------------------------
# Snapshots without optimizer state.


def test_strip_optimizer_state_shrinks_the_file_and_keeps_everything_else(full_snapshot):
    before = load_network(full_snapshot)
    size = full_snapshot.stat().st_size
    assert before["has_optimizer_state"]
    moments = sum(
        t.numel() * t.element_size()
        for key in ("G_opt", "D_opt")
        for t in tensors_by_path(before["resume_state"][key]).values()
    )
    saved = checkpoint.strip_optimizer_state(full_snapshot)
    assert saved == size - full_snapshot.stat().st_size and saved >= moments
    after = load_network(full_snapshot)
    assert not after["has_optimizer_state"]
    assert set(before["resume_state"]) - set(after["resume_state"]) == {"G_opt", "D_opt"}
    kept = {k: v for k, v in before["resume_state"].items() if k not in ("G_opt", "D_opt")}
    kept_tensors = tensors_by_path(kept)
    for path, tensor in tensors_by_path(after["resume_state"]).items():
        assert torch.equal(tensor, kept_tensors.pop(path)), path
    assert not kept_tensors
    assert (
        after["resume_state"]["cur_nimg"] == 4096
        and after["resume_state"]["rng"][0]["numpy"]["pos"] == before["resume_state"]["rng"][0]["numpy"]["pos"]
    )
    for name in ("G", "D", "G_ema"):
        assert_same_state(after[name], before[name])
    assert after["training_set_kwargs"] == TRAINING_SET_KWARGS
    raw = torch.load(full_snapshot, weights_only=True)
    assert raw["digests"] == checkpoint.tensor_digests(raw)
    stripped = full_snapshot.read_bytes()
    assert checkpoint.strip_optimizer_state(full_snapshot) == 0 and full_snapshot.read_bytes() == stripped
    assert_only(full_snapshot.parent, [full_snapshot.name])


def test_a_failed_write_removes_the_folders_it_made_and_keeps_the_others(tmp_path):
    (tmp_path / "kept").mkdir()

    def fail(f):
        f.write(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(files.FileWriteError, match="no space left on device"):
        files.atomic_write(tmp_path / "kept" / "new" / "deeper" / "out.bin", fail)
    assert os.listdir(tmp_path) == ["kept"] and os.listdir(tmp_path / "kept") == []
