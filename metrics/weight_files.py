"""Reading detector weight files safely and checking them key by key.

Two containers occur in the wild: TorchScript archives (StyleGAN2-ADA's detectors) and `torch.save` state dicts
(pytorch-fid, torchvision, lpips). Neither is allowed to run code: TorchScript goes through our restricted reader,
state dicts through `torch.load(weights_only=True)`.
"""

from __future__ import annotations

import zipfile
from collections.abc import Mapping

import torch

from metrics.torchscript_reader import TorchScriptReadError, read_torchscript_tensors


class DetectorFormatError(ValueError):
    """A detector file whose contents do not match the expected architecture; the message lists the differences."""


def is_torchscript_archive(path: str) -> bool:
    """True for a `torch.jit.save` archive (a zip with <name>/data.pkl and <name>/code/)."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
    return any(name.endswith("/data.pkl") and name.count("/") == 1 for name in names) and any(
        name.count("/") >= 2 and name.split("/")[1] == "code" for name in names
    )


def read_weight_file(path: str) -> dict[str, torch.Tensor]:
    """Flat {name: tensor} from a TorchScript archive or a `torch.save`d state dict; never executes file code."""
    if is_torchscript_archive(path):
        try:
            return dict(read_torchscript_tensors(path))
        except TorchScriptReadError as err:
            raise DetectorFormatError(str(err)) from None
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise DetectorFormatError(
            f"{path}: cannot read as a weights-only torch file ({type(err).__name__}: {err})"
        ) from None
    if isinstance(obj, Mapping) and "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise DetectorFormatError(f"{path}: expected a state dict (name -> tensor), got {type(obj).__name__}")
    return {str(k): v for k, v in obj.items()}


def _listing(names: list[str], limit: int = 6) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" (and {len(names) - limit} more)" if len(names) > limit else "")


def check_state_dict(
    expected: Mapping[str, tuple[int, ...]],
    got: Mapping[str, torch.Tensor],
    source: str,
    optional: set[str] | None = None,
    allow_extra: bool = False,
) -> None:
    """Raise DetectorFormatError unless `got` has exactly the `expected` names with the expected shapes.

    `optional` names may be absent or present (any shape); with `allow_extra`, unknown names are ignored.
    """
    optional = optional or set()
    missing = [name for name in expected if name not in got]
    unexpected = [name for name in got if name not in expected and name not in optional]
    wrong = [
        f"{name} {tuple(got[name].shape)} != {tuple(shape)}"
        for name, shape in expected.items()
        if name in got and tuple(got[name].shape) != tuple(shape)
    ]
    problems = []
    if missing:
        problems.append(f"missing {len(missing)}: {_listing(missing)}")
    if unexpected and not allow_extra:
        problems.append(f"unexpected {len(unexpected)}: {_listing(unexpected)}")
    if wrong:
        problems.append(f"wrong shape {len(wrong)}: {_listing(wrong)}")
    if problems:
        raise DetectorFormatError(f"{source}: does not match the expected weights ({'; '.join(problems)})")
