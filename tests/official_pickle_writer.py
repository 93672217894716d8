"""A writer of official-structure StyleGAN2-ADA pickles for tests: every network is pickled as
`torch_utils.persistence._reconstruct_persistent_obj(meta)` with meta = {type, version, module_src, class_name,
state=<the module's __dict__>}, tensors and parameters go through torch's own pickling, numpy scalars appear as
attributes and kwargs are dnnlib EasyDicts, as in a real `network-snapshot-*.pkl`."""

from __future__ import annotations

import collections
import contextlib
import pickle
import sys
import types

import numpy as np
import torch

from dnnlib.util import EasyDict

MODULE_SRC = "# the official training/networks.py source would be here\nimport torch\n"


def _reconstruct_standin(meta):
    raise AssertionError("the importer must never call the pickled reconstruct function")


_reconstruct_standin.__module__ = "torch_utils.persistence"
_reconstruct_standin.__name__ = _reconstruct_standin.__qualname__ = "_reconstruct_persistent_obj"


@contextlib.contextmanager
def persistence_module():
    """Lets pickle emit the GLOBAL torch_utils.persistence._reconstruct_persistent_obj while writing fixtures."""
    fake = types.ModuleType("torch_utils.persistence")
    fake._reconstruct_persistent_obj = _reconstruct_standin
    saved = sys.modules.get(fake.__name__)
    sys.modules[fake.__name__] = fake
    try:
        yield
    finally:
        if saved is None:
            del sys.modules[fake.__name__]
        else:
            sys.modules[fake.__name__] = saved


class OfficialObject:
    """Pickles exactly like a torch_utils.persistence-decorated object (see persistence.py's __reduce__)."""

    def __init__(self, class_name: str, state: dict, module_src: str = MODULE_SRC):
        self.class_name, self.state, self.module_src = class_name, state, module_src

    def __reduce__(self):
        meta = dict(type="class", version=6, module_src=self.module_src, class_name=self.class_name, state=self.state)
        return (_reconstruct_standin, (meta,), None)


def easydicts(value):
    """Official kwargs are EasyDicts (train.py builds them with dnnlib.EasyDict)."""
    if isinstance(value, dict):
        return EasyDict({k: easydicts(v) for k, v in value.items()})
    return value


def module_state(module: torch.nn.Module, init_kwargs: dict | None = None) -> dict:
    """A module's __dict__ as official pickles carry it: torch internals, nested persistent objects, attributes."""
    state = dict(
        training=module.training,
        _parameters=collections.OrderedDict(module._parameters),
        _buffers=collections.OrderedDict(module._buffers),
        _non_persistent_buffers_set=set(module._non_persistent_buffers_set),
        _backward_hooks=collections.OrderedDict(),
        _is_full_backward_hook=None,
        _forward_hooks=collections.OrderedDict(),
        _forward_pre_hooks=collections.OrderedDict(),
        _state_dict_hooks=collections.OrderedDict(),
        _load_state_dict_pre_hooks=collections.OrderedDict(),
        _modules=collections.OrderedDict(
            (name, None if child is None else OfficialObject(type(child).__name__, module_state(child)))
            for name, child in module._modules.items()
        ),
        _init_args=(),
        _init_kwargs=dict(easydicts(init_kwargs or {})),
        weight_gain=np.float64(0.125),  # official layers keep numpy scalars such as weight_gain / act_gain
        act_gain=np.float32(1.4142135),
    )
    for key, value in vars(module).items():  # plain attributes, e.g. z_dim, block_resolutions
        if not key.startswith("_") and key != "init_kwargs" and isinstance(value, (int, float, str, list)):
            state.setdefault(key, value)
    return state


def official_network(module: torch.nn.Module, module_src: str = MODULE_SRC) -> OfficialObject:
    return OfficialObject(type(module).__name__, module_state(module, module.init_kwargs), module_src)


def official_pickle_bytes(data, protocol: int = 3) -> bytes:
    """Protocol 3 is the default of the Python 3.7 the official code ran on; 4 that of later ones."""
    with persistence_module():
        return pickle.dumps(data, protocol=protocol)
