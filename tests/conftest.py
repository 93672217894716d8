"""Shared test setup: tiny CPU configs, deterministic seeds, and the shared fixture locations."""

import os
import pathlib

import pytest
import torch

from metrics import detectors

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED = pathlib.Path(os.environ.get("RLO_SHARED_DIR", REPO.parent / "shared"))


# Tiny test configs spend more time in thread hand-offs than in arithmetic; one thread is faster and steadier.
torch.set_num_threads(1)

# The tests write stand-in detector files under the real names, whose digests they cannot have; the digest check
# has its own tests (test_metrics_detectors.py), which turn it back on. Set for the whole session (module-scoped
# fixtures build detectors too) and inherited by the subprocesses tests start.
os.environ[detectors.DIGESTS_ENV] = "off"


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield


@pytest.fixture
def shared_dir():
    return SHARED


def shared_path(*parts) -> pathlib.Path:
    """Path into ../shared, or skip the test with the reason when it is absent."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"shared fixture not found: {path} (clone the repo beside shared/ or set RLO_SHARED_DIR)")
    return path


def perturbed(module: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Make every floating parameter/buffer non-default, so a round trip cannot pass by re-initialisation."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for tensor in module.state_dict().values():
            if tensor.is_floating_point():
                tensor.add_(0.1 * torch.randn(tensor.shape, generator=gen))
    return module.eval()


# ----------------------------------------------------------------------------------------------------
# Tiny networks and train.py runs: the settings the tests build on, written once (each test says what it changes).


def tiny_g(resolution: int = 8, *, c_dim: int = 0, latent: int = 8, base: int = 64, cmax: int = 8, layers: int = 2):
    """Generator kwargs of a network small enough for a CPU test: `latent`-d z and w, RGB at `resolution`."""
    return dict(
        z_dim=latent,
        c_dim=c_dim,
        w_dim=latent,
        img_resolution=resolution,
        img_channels=3,
        mapping_kwargs=dict(num_layers=layers),
        synthesis_kwargs=dict(channel_base=base, channel_max=cmax),
    )


def tiny_d(resolution: int = 8, *, c_dim: int = 0, base: int = 64, cmax: int = 8, **kwargs):
    """Discriminator kwargs matching tiny_g (kwargs: architecture, epilogue_kwargs, ...)."""
    return dict(c_dim=c_dim, img_resolution=resolution, img_channels=3, channel_base=base, channel_max=cmax, **kwargs)


# train.py flags of a run that trains in seconds on a CPU: 16 channels at most, batch 8, no metrics.
TINY_TRAIN = ["--cbase=64", "--cmax=16", "--batch=8", "--metrics=none"]
