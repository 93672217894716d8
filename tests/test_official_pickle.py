"""Importing official StyleGAN2-ADA pickles without executing anything from them.

The tests build pickles in the official structure: every network is pickled as
`torch_utils.persistence._reconstruct_persistent_obj(meta)` with meta = {type, version, module_src, class_name,
state=<the module's __dict__>}, tensors and parameters go through torch's own pickling (storages as
`torch.storage._load_from_bytes` of a legacy torch.save stream), numpy scalars appear as attributes and kwargs are
dnnlib EasyDicts, as in a real `network-snapshot-*.pkl`.
"""

from __future__ import annotations

import collections
import copyreg
import io
import json
import os
import pickle
import pickletools
import re
import struct
import time

import numpy as np
import pytest
import torch
from conftest import perturbed, shared_path, tiny_d, tiny_g
from official_pickle_writer import (
    MODULE_SRC,
    OfficialObject,
    easydicts,
    module_state,
    official_network,
    official_pickle_bytes,
    persistence_module,
)

from dnnlib.util import EasyDict
from training import official_pickle
from training.checkpoint import CheckpointError, load_network
from training.networks import Discriminator, Generator
from training.official_pickle import ForbiddenGlobalError, OfficialPickleError, PersistentRecord

TINY_G = tiny_g(8, c_dim=2)
TINY_D = tiny_d(8, c_dim=2, architecture="resnet", epilogue_kwargs=dict(mbstd_group_size=2))


@pytest.fixture(autouse=True)
def persistence_module_for_pickling():
    """The tests below also pickle records by hand (pickle.dumps), not only through official_pickle_bytes."""
    with persistence_module():
        yield


@pytest.fixture
def nets():
    torch.manual_seed(0)
    nets = dict(
        G=perturbed(Generator(**TINY_G), 1),
        D=perturbed(Discriminator(**TINY_D), 2),
        G_ema=perturbed(Generator(**TINY_G), 3),
    )
    return {name: net.requires_grad_(False) for name, net in nets.items()}


def snapshot_dict(nets, module_src=MODULE_SRC):
    return dict(
        training_set_kwargs=dict(
            EasyDict(
                class_name="training.dataset.ImageFolderDataset",
                path="~/data.zip",
                use_labels=True,
                max_size=70000,
                xflip=False,
                resolution=8,
            )
        ),
        G=official_network(nets["G"], module_src),
        D=official_network(nets["D"], module_src),
        G_ema=official_network(nets["G_ema"], module_src),
        augment_pipe=None,
    )


def outputs(nets):
    z = torch.randn([4, 8], generator=torch.Generator().manual_seed(7))
    c = torch.eye(2)[[0, 1, 1, 0]]
    img = nets["G_ema"](z, c, noise_mode="const")
    return img, nets["G"](z, c, truncation_psi=0.7, noise_mode="const"), nets["D"](img, c)


# ----------------------------------------------------------------------------
# The writer reproduces the official pickle structure.


def globals_in(data: bytes) -> set[str]:
    names, strings = set(), []
    for op, arg, _ in pickletools.genops(data):
        if op.name in ("SHORT_BINUNICODE", "BINUNICODE", "UNICODE"):
            strings.append(arg)
        elif op.name == "GLOBAL":
            names.add(arg.replace(" ", "."))
        elif op.name == "STACK_GLOBAL":
            names.add(f"{strings[-2]}.{strings[-1]}")
    return names


def test_fixture_pickles_use_the_official_globals(nets):
    names = globals_in(official_pickle_bytes(snapshot_dict(nets)))
    assert {
        "torch_utils.persistence._reconstruct_persistent_obj",
        "torch._utils._rebuild_parameter",
        "torch._utils._rebuild_tensor_v2",
        "torch.storage._load_from_bytes",
        "collections.OrderedDict",
        "dnnlib.util.EasyDict",
        "numpy.dtype",
    } <= names
    assert any(n.endswith("multiarray.scalar") for n in names)


# ----------------------------------------------------------------------------
# Importing.


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_import_rebuilds_networks_with_identical_state_and_outputs(tmp_path, nets, protocol):
    path = tmp_path / "network-snapshot-000100.pkl"
    path.write_bytes(official_pickle_bytes(snapshot_dict(nets), protocol))
    loaded = load_network(path)
    for name in ("G", "D", "G_ema"):
        assert type(loaded[name]) is type(nets[name])
        assert loaded[name].init_kwargs == nets[name].init_kwargs
        for key, value in nets[name].state_dict().items():
            assert torch.equal(loaded[name].state_dict()[key], value), (name, key)
    assert loaded["augment_pipe"] is None
    assert loaded["training_set_kwargs"]["max_size"] == 70000
    assert type(loaded["training_set_kwargs"]) is dict
    with torch.no_grad():
        for expected, got in zip(outputs(nets), outputs(loaded)):
            assert torch.equal(expected, got)


def test_augment_pipe_imports_with_its_probability(tmp_path, nets):
    augment = pytest.importorskip("training.augment")
    spec = dict(augment.AUGPIPE_SPECS["bgc"])  # official _init_kwargs hold only the kwargs train.py passed
    pipe = augment.AugmentPipe(**spec)
    with torch.no_grad():
        pipe.p.fill_(0.42)
    snap = dict(snapshot_dict(nets), augment_pipe=OfficialObject("AugmentPipe", module_state(pipe, spec)))
    path = tmp_path / "net.pkl"
    path.write_bytes(official_pickle_bytes(snap))
    loaded = load_network(path)["augment_pipe"]
    assert type(loaded) is augment.AugmentPipe and loaded.init_kwargs == pipe.init_kwargs
    assert float(loaded.p) == pytest.approx(0.42)
    for key, value in pipe.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key


def test_format_is_detected_by_content_not_extension(tmp_path, nets):
    path = tmp_path / "looks-like-ours.pt"
    path.write_bytes(official_pickle_bytes(snapshot_dict(nets)))
    assert type(load_network(path)["G_ema"]) is Generator


def test_records_are_inert_and_module_src_is_never_run(tmp_path, nets):
    marker = tmp_path / "module_src_ran"
    hostile_src = f"open({str(marker)!r}, 'w').close()\nclass Generator: pass\n"
    data = official_pickle_bytes(snapshot_dict(nets, module_src=hostile_src))
    raw = official_pickle.read_official_pickle(io.BytesIO(data))
    assert isinstance(raw["G"], PersistentRecord) and raw["G"].class_name == "Generator"
    assert raw["G"].module_src_chars == len(hostile_src) and raw["G"].version == 6
    assert isinstance(raw["G"].state["_modules"]["mapping"], PersistentRecord)
    path = tmp_path / "net.pkl"
    path.write_bytes(data)
    load_network(path)
    assert not marker.exists()


def test_empty_easydict_state_from_older_pythons_is_accepted():
    """Python 3.7 could write an empty __dict__ (BUILD {}) after an EasyDict; that must still read as a dict."""

    class OldStylePickler(pickle.Pickler):
        def reducer_override(self, obj):
            if type(obj) is EasyDict:
                return copyreg.__newobj__, (EasyDict,), {}, None, iter(obj.items())
            return NotImplemented

    buf = io.BytesIO()
    OldStylePickler(buf, protocol=3).dump(dict(kwargs=EasyDict(a=1, b=EasyDict(c=2))))
    assert "BUILD" in {op.name for op, _, _ in pickletools.genops(buf.getvalue())}
    data = official_pickle.read_official_pickle(io.BytesIO(buf.getvalue()))
    assert data == {"kwargs": {"a": 1, "b": {"c": 2}}}


def test_non_persistent_buffers_are_not_required(tmp_path, nets):
    """A buffer listed in _non_persistent_buffers_set is skipped, as torch's state_dict skips it."""
    snap = snapshot_dict(nets)
    mapping_state = snap["G"].state["_modules"]["mapping"].state
    mapping_state["_buffers"]["scratch"] = torch.zeros(5)
    mapping_state["_non_persistent_buffers_set"].add("scratch")
    path = tmp_path / "net.pkl"
    path.write_bytes(official_pickle_bytes(snap))
    assert "mapping.scratch" not in load_network(path)["G"].state_dict()


def test_state_mismatch_names_network_and_key(tmp_path, nets):
    snap = snapshot_dict(nets)
    del snap["G_ema"].state["_modules"]["mapping"].state["_buffers"]["w_avg"]
    path = tmp_path / "net.pkl"
    path.write_bytes(official_pickle_bytes(snap))
    with pytest.raises(CheckpointError, match=r"\['G_ema'\] \(Generator\).*missing keys \[mapping.w_avg\]"):
        load_network(path)


def test_unknown_top_level_class_is_refused(tmp_path, nets):
    snap = snapshot_dict(nets)
    snap["D"].class_name = "StyleGAN3Discriminator"
    path = tmp_path / "net.pkl"
    path.write_bytes(official_pickle_bytes(snap))
    with pytest.raises(CheckpointError, match=r"\['D'\].*'StyleGAN3Discriminator'.*only Generator"):
        load_network(path)


def test_incompatible_init_kwargs_are_named(tmp_path, nets):
    snap = snapshot_dict(nets)
    snap["G"].state["_init_kwargs"]["synthesis_kwargs"]["magnitude_ema_beta"] = 0.999  # a StyleGAN3 kwarg
    path = tmp_path / "net.pkl"
    path.write_bytes(official_pickle_bytes(snap))
    with pytest.raises(CheckpointError, match=r"\['G'\]: cannot construct Generator.*magnitude_ema_beta"):
        load_network(path)


def test_pickle_without_networks_is_not_a_snapshot(tmp_path):
    path = tmp_path / "other.pkl"
    path.write_bytes(pickle.dumps({"weights": [1, 2, 3]}))
    with pytest.raises(CheckpointError, match="not a StyleGAN2-ADA network snapshot"):
        load_network(path)


@pytest.mark.parametrize("fraction", [0.05, 0.5, 0.99])
def test_truncated_pickle_gives_clear_error(tmp_path, nets, fraction):
    data = official_pickle_bytes(snapshot_dict(nets))
    path = tmp_path / "cut.pkl"
    path.write_bytes(data[: int(len(data) * fraction)])
    with pytest.raises(CheckpointError, match=r"cut\.pkl.*truncated or corrupt"):
        load_network(path)


def test_tensor_overrunning_its_storage_is_refused():
    class Overrun:
        def __reduce__(self):
            storage = torch.zeros(4)._typed_storage()  # pickles as _load_from_bytes, like any tensor's
            return torch._utils._rebuild_tensor_v2, (storage, 0, (1000,), (1,), False, collections.OrderedDict())

    with pytest.raises(OfficialPickleError, match="overruns its storage"):
        official_pickle.read_official_pickle(io.BytesIO(pickle.dumps(Overrun(), protocol=4)))


def test_storage_saved_from_cuda_is_mapped_to_cpu():
    """Pickles made from CUDA tensors name torch.cuda.FloatStorage at 'cuda:0' in the embedded stream."""
    inner = torch.arange(6.0)._typed_storage().__reduce__()[1][0]
    cuda_inner = inner.replace(b"ctorch\nFloatStorage\n", b"ctorch.cuda\nFloatStorage\n")
    cuda_inner = cuda_inner.replace(b"X\x03\x00\x00\x00cpu", b"X\x06\x00\x00\x00cuda:0")
    assert cuda_inner.count(b"cuda") == 2
    storage = official_pickle._load_storage_from_bytes(cuda_inner)
    tensor = official_pickle._rebuild_tensor_v2(storage, 1, (2,), (2,), False, collections.OrderedDict())
    assert tensor.device.type == "cpu" and tensor.tolist() == [1.0, 3.0]


def test_shared_storage_views_keep_their_offsets():
    base = torch.arange(12.0)
    data = pickle.dumps({"a": base[2:5], "b": base.view(3, 4)[:, 1]}, protocol=4)
    out = official_pickle.read_official_pickle(io.BytesIO(data))
    assert torch.equal(out["a"], base[2:5]) and torch.equal(out["b"], base.view(3, 4)[:, 1])


# ----------------------------------------------------------------------------
# Hostile pickles: refused, and nothing runs.


class CallOnLoad:
    """Pickles as `func(*args)`, the classic code-execution payload."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def hostile_payloads(marker: str) -> dict[str, bytes]:
    import subprocess

    touch = f"touch {marker}"
    create = f"open({marker!r}, 'w').close()"
    return {
        "posix.system": pickle.dumps(CallOnLoad(os.system, touch), protocol=4),
        "builtins.eval": pickle.dumps(CallOnLoad(eval, create), protocol=3),
        "builtins.exec": pickle.dumps(CallOnLoad(exec, create), protocol=2),
        "subprocess.check_call": pickle.dumps(CallOnLoad(subprocess.check_call, ["touch", marker]), protocol=4),
        "subprocess.Popen": pickle.dumps(CallOnLoad(subprocess.Popen, ["touch", marker]), protocol=4),
        "os.system (protocol 0 GLOBAL)": f"cos\nsystem\n(V{touch}\ntR.".encode(),
        "os.system (INST opcode)": f"(V{touch}\nios\nsystem\n.".encode(),
        "builtins.getattr": pickle.dumps(CallOnLoad(getattr, int, "from_bytes"), protocol=4),
        "torch.nn.modules.activation.ReLU": pickle.dumps(torch.nn.ReLU(), protocol=2),  # a non-persistent module
        "copyreg._reconstructor": pickle.dumps(torch.nn.ReLU(), protocol=1),
        "torch.serialization.load": pickle.dumps(CallOnLoad(torch.load, marker), protocol=4),
    }


@pytest.mark.parametrize("name", list(hostile_payloads("x")))
def test_hostile_global_is_refused_and_nothing_runs(tmp_path, name):
    marker = tmp_path / "pwned"
    data = hostile_payloads(str(marker))[name]
    refused = name.split(" ")[0]
    if refused == "os.system" or refused == "posix.system":
        refused = "(os|posix).system"
    with pytest.raises(ForbiddenGlobalError, match=f"refusing to load global {refused}"):
        official_pickle.read_official_pickle(io.BytesIO(data))
    path = tmp_path / "evil.pkl"
    path.write_bytes(data)
    # Protocol-0/1 streams (never written by the official code) are already refused by the format sniffing.
    with pytest.raises(CheckpointError, match="refusing to load global|neither an rlo-stylegan2 snapshot"):
        load_network(path)
    assert not marker.exists()


def test_payload_hidden_inside_a_network_record_is_refused(tmp_path, nets):
    marker = tmp_path / "pwned"
    snap = snapshot_dict(nets)
    snap["G"].state["_modules"]["synthesis"].state["note"] = CallOnLoad(os.system, f"touch {marker}")
    path = tmp_path / "net.pkl"
    path.write_bytes(official_pickle_bytes(snap))
    with pytest.raises(CheckpointError, match="refusing to load global (os|posix).system"):
        load_network(path)
    assert not marker.exists()


def test_payload_inside_an_embedded_storage_stream_is_refused(tmp_path):
    """_load_from_bytes gets a legacy torch.save stream; a hostile one must not run either."""
    marker = tmp_path / "pwned"
    inner = io.BytesIO()
    torch.save(CallOnLoad(os.system, f"touch {marker}"), inner, _use_new_zipfile_serialization=False)
    data = pickle.dumps(CallOnLoad(torch.storage._load_from_bytes, inner.getvalue()), protocol=4)
    with pytest.raises(OfficialPickleError, match="embedded tensor storage could not be read safely"):
        official_pickle.read_official_pickle(io.BytesIO(data))
    assert not marker.exists()


def test_tensorflow_pickle_gets_a_conversion_hint():
    data = b"cdnnlib.tflib.network\nNetwork\n)\x81."
    with pytest.raises(ForbiddenGlobalError, match="TensorFlow"):
        official_pickle.read_official_pickle(io.BytesIO(data))


def test_non_numeric_numpy_dtype_is_refused():
    data = pickle.dumps(np.dtype("O"), protocol=4)
    with pytest.raises(OfficialPickleError, match="not numeric"):
        official_pickle.read_official_pickle(io.BytesIO(data))


# ----------------------------------------------------------------------------
# Pickles built to exhaust memory or CPU: refused from the opcode stream, before anything is built, in one line.


def refused_quickly(data: bytes, tmp_path, match: str, limit_s: float = 3.0) -> str:
    """Load `data` as a file; it must raise one short CheckpointError matching `match` within `limit_s`."""
    path = tmp_path / "hostile.pkl"
    path.write_bytes(data)
    start = time.monotonic()
    with pytest.raises(CheckpointError) as info:
        load_network(path)
    elapsed = time.monotonic() - start
    text = str(info.value)
    assert re.search(match, text), text
    assert str(path) in text and "\n" not in text and len(text) <= 1000
    assert elapsed < limit_s, f"took {elapsed:.1f} s"
    return text


def self_containing_record() -> bytes:
    """{'G': rec} where rec.state['_modules']['self'] is rec, written opcode by opcode (pickle cannot make it)."""

    def text(s: str) -> bytes:
        return b"\x8c" + bytes([len(s)]) + s.encode()  # SHORT_BINUNICODE

    return b"".join(
        [
            b"\x80\x04",
            b"ctorch_utils.persistence\n_reconstruct_persistent_obj\n",  # PROTO 4, GLOBAL
            b"}",
            b"(",  # EMPTY_DICT (meta), MARK
            text("type"),
            text("class"),
            text("version"),
            b"K\x06",
            text("class_name"),
            text("Generator"),
            text("state"),
            b"}",
            b"(",
            text("_modules"),
            b"}",
            b"\x94",
            b"u",  # state = {'_modules': mods (memo 0)}
            b"u",
            b"\x85",
            b"R",
            b"\x94",  # SETITEMS, TUPLE1, REDUCE -> rec (memo 1)
            b"h\x00",
            text("self"),
            b"h\x01",
            b"s",
            b"0",  # mods['self'] = rec; POP mods
            b"0",
            b"}",
            text("G"),
            b"h\x01",
            b"s",
            b".",  # POP rec; {'G': rec}; STOP
        ]
    )


def test_self_containing_record_is_refused(tmp_path):
    data = self_containing_record()
    assert len(data) < 200
    refused_quickly(data, tmp_path, r"the pickle holds a record that contains itself; refusing before building")


def test_exponentially_shared_records_are_refused(tmp_path):
    """Each record holds the previous one twice: 60 levels make a 2**60-record tree of a few kB."""
    record = OfficialObject("Generator", dict(_modules={}))
    for _ in range(60):
        record = OfficialObject("Generator", dict(_modules=collections.OrderedDict(a=record, b=record)))
    data = official_pickle_bytes(dict(G=record), protocol=4)
    assert len(data) < 20_000
    refused_quickly(data, tmp_path, r"holds more than 2,000,000 objects once shared records are expanded")


def test_deep_nesting_is_refused(tmp_path, nets):
    deep: list = []
    for _ in range(150):
        deep = [deep]
    snap = snapshot_dict(nets)
    snap["G"].state["_modules"]["mapping"].state["deep"] = deep
    refused_quickly(official_pickle_bytes(snap), tmp_path, r"nests containers more than 100 deep")


def test_declared_lengths_beyond_the_file_are_refused_without_allocating(tmp_path):
    for opcode in (b"\x8e", b"\x96", b"\x8d"):  # BINBYTES8, BYTEARRAY8, BINUNICODE8 of 2**62 bytes
        data = b"\x80\x05" + opcode + struct.pack("<Q", 2**62) + b"tiny."
        refused_quickly(data, tmp_path, r"truncated or corrupt|declares more bytes than the file holds")


def test_containers_as_dict_keys_or_set_members_are_refused(tmp_path):
    """Hashing a tuple of 2**60 shared tuples never ends, and the unpickler would hash it to build a dict or set
    (so the test writes the opcodes around the pickled tuple itself: making the dict here would hang too)."""
    key: tuple = ()
    for _ in range(60):
        key = (key, key)
    body = pickle.dumps(key, protocol=2)[2:-1]  # without PROTO and STOP
    refused_quickly(b"\x80\x02}" + body + b"K\x01s.", tmp_path, r"uses a container as a dict key or set")
    refused_quickly(b"\x80\x04(" + body + b"\x91.", tmp_path, r"as a dict key or set member")  # FROZENSET
    refused_quickly(
        b"\x80\x02c__builtin__\nset\n]" + body + b"a\x85R.",
        tmp_path,  # set([key])
        r"more than 2,000,000 objects once shared",
    )
    small = pickle.dumps(((), ()), protocol=2)[2:-1]  # expands little; the set itself refuses a tuple member
    refused_quickly(
        b"\x80\x02c__builtin__\nset\n]" + small + b"a\x85R.", tmp_path, r"set member \(\(\), \(\)\) is a tuple"
    )


def test_state_set_on_a_tensor_is_refused(tmp_path):
    """BUILD on a tensor would call Tensor.__setstate__, which can resize its storage and set hooks."""

    class TensorWithState:
        def __reduce__(self):
            storage = torch.zeros(4)._typed_storage()
            args = (storage, 0, (4,), (1,), False, collections.OrderedDict())
            return torch._utils._rebuild_tensor_v2, args, (storage, 0, (10**9,), (1,))

    refused_quickly(
        pickle.dumps({"G": TensorWithState()}, protocol=4),
        tmp_path,
        r"sets state on a torch._utils._rebuild_tensor_v2 \(official pickles set it only on EasyDicts",
    )


def test_huge_names_and_values_give_short_messages(tmp_path, nets):
    text = refused_quickly(b"\x80\x02c" + b"m" * 10**7 + b"\nsystem\n)R.", tmp_path, r"refusing to load global m+")
    assert len(text) < 500
    snap = snapshot_dict(nets)
    snap["G"].state["_init_kwargs"]["x" * 10**6] = list(range(10**5))
    refused_quickly(official_pickle_bytes(snap), tmp_path, r"\['G'\]: cannot construct Generator.*'xxxx.*\.\.\.")


def test_hostile_init_kwargs_in_an_official_pickle_are_refused_before_building(tmp_path, nets, monkeypatch):
    snap = snapshot_dict(nets)
    snap["G"].state["_init_kwargs"]["z_dim"] = 4_000_000
    built = []
    real_init = torch.nn.Module.__init__
    monkeypatch.setattr(
        torch.nn.Module,
        "__init__",
        lambda self, *a, **k: (built.append(type(self).__name__), real_init(self, *a, **k))[1],
    )
    refused_quickly(
        official_pickle_bytes(snap),
        tmp_path,
        r"\['G'\]: Generator kwarg z_dim=4000000 is out of bounds; expected an integer in \[0, 16384\]",
    )
    assert built == []


def test_positional_init_args_are_bound_to_their_names(tmp_path, nets):
    snap = snapshot_dict(nets)
    kwargs = snap["G"].state["_init_kwargs"]
    snap["G"].state["_init_args"] = (kwargs.pop("z_dim"), kwargs.pop("c_dim"))
    path = tmp_path / "net.pkl"
    path.write_bytes(official_pickle_bytes(snap))
    loaded = load_network(path)
    assert loaded["G"].init_kwargs == nets["G"].init_kwargs
    assert loaded["init_kwargs"]["G"] == TINY_G


def test_load_reports_the_pickles_own_init_kwargs(tmp_path, nets):
    snap = snapshot_dict(nets)
    del snap["D"].state["_init_kwargs"]["block_kwargs"]  # official kwargs may leave out defaults
    path = tmp_path / "net.pkl"
    path.write_bytes(official_pickle_bytes(snap))
    loaded = load_network(path)
    assert loaded["init_kwargs"] == {
        name: None if name == "augment_pipe" else snap[name].state["_init_kwargs"]
        for name in ("G", "D", "G_ema", "augment_pipe")
    }
    assert "block_kwargs" not in loaded["init_kwargs"]["D"] and not loaded["has_optimizer_state"]
    assert type(loaded["init_kwargs"]["G"]) is dict and type(loaded["init_kwargs"]["G"]["mapping_kwargs"]) is dict


def test_structure_check_passes_official_pickles_and_leaves_the_file_position(nets):
    data = official_pickle_bytes(snapshot_dict(nets))
    for protocol in (2, 3, 4, 5):
        file = io.BytesIO(b"prefix" + official_pickle_bytes(snapshot_dict(nets), protocol))
        file.seek(6)
        official_pickle.check_pickle_structure(file)
        assert file.tell() == 6
    assert isinstance(official_pickle.read_official_pickle(io.BytesIO(data))["G"], PersistentRecord)


# ----------------------------------------------------------------------------
# Against the official code's own weights and outputs (shared fixture made with NVlabs code).


def parse_param_kinds(path) -> dict[str, dict[str, str]]:
    """param_names.txt -> {'G': {name: 'param'|'buffer'}, 'D': {...}}."""
    kinds: dict[str, dict[str, str]] = {}
    section = None
    for line in path.read_text().splitlines():
        if line.startswith("## ") and ":" in line and not line.startswith("## init_kwargs"):
            section = kinds.setdefault("G" if line[3:].startswith("G") else "D", {})
        elif line and not line.startswith("#") and section is not None:
            name, _shape, _dtype, kind = line.split("\t")
            section[name] = kind
    return kinds


def official_tree(class_name: str, state_dict: dict, kinds: dict[str, str], init_kwargs: dict) -> OfficialObject:
    """Nested persistent objects from a flat official state_dict, parameters and buffers as official keeps them."""

    def node(name):
        return OfficialObject(
            name,
            dict(
                _parameters=collections.OrderedDict(),
                _buffers=collections.OrderedDict(),
                _modules=collections.OrderedDict(),
                _non_persistent_buffers_set=set(),
                training=False,
            ),
        )

    root = node(class_name)
    root.state.update(_init_args=(), _init_kwargs=dict(easydicts(init_kwargs)))
    for key, tensor in state_dict.items():
        *path, leaf = key.split(".")
        obj = root
        for part in path:
            obj = obj.state["_modules"].setdefault(part, node("Submodule"))
        if kinds[key] == "param":
            obj.state["_parameters"][leaf] = torch.nn.Parameter(tensor, requires_grad=False)
        else:
            obj.state["_buffers"][leaf] = tensor
    return root


def test_official_reference_weights_import_and_reproduce_official_outputs(tmp_path):
    ref_dir = shared_path("data", "sg2ada_ref")
    ref = torch.load(ref_dir / "tiny-G_state_dict.pt", weights_only=True)
    kinds = parse_param_kinds(ref_dir / "param_names.txt")
    manifest = json.loads((ref_dir / "manifest.json").read_text())
    snap = dict(
        G=official_tree("Generator", ref["G"], kinds["G"], ref["G_kwargs"]),
        G_ema=official_tree("Generator", ref["G_ema"], kinds["G"], ref["G_kwargs"]),
        D=official_tree("Discriminator", ref["D"], kinds["D"], ref["D_kwargs"]),
        augment_pipe=None,
        training_set_kwargs=None,
    )
    path = tmp_path / "official.pkl"
    path.write_bytes(official_pickle_bytes(snap))
    loaded = load_network(path)
    for name in ("G", "G_ema", "D"):
        state = loaded[name].state_dict()
        assert set(state) == set(ref[name])
        assert all(torch.equal(state[k], v) for k, v in ref[name].items())
    assert loaded["G_ema"].init_kwargs == manifest["G_kwargs"]

    z = torch.from_numpy(np.load(ref_dir / "z.npy"))
    c = torch.zeros([len(z), 0])
    with torch.no_grad():
        img = loaded["G_ema"](z, c, truncation_psi=1, noise_mode="const")
        logits = loaded["D"](img, c)
    np.testing.assert_allclose(img.numpy(), np.load(ref_dir / "img_G_ema.npy"), atol=1e-4, rtol=0)
    np.testing.assert_allclose(logits.numpy(), np.load(ref_dir / "d_logits.npy"), atol=1e-4, rtol=1e-5)
