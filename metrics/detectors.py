"""Finding the detector weight files on disk (never downloading them) and building the detectors once per process.

Search order for each file: the `--detector-dir` flag, $RLO_DETECTOR_DIR, our cache folder
(~/.cache/rlo_stylegan2/detectors, or $RLO_CACHE_DIR/detectors), the URL caches that StyleGAN2-ADA (dnnlib) and
torch.hub keep. A missing file is an error that names the file, where to put it, and where to get it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import os

import torch

from dnnlib import util as dnnlib_util
from metrics.digits_classifier import build_digits_detector, ensure_classifier_file
from metrics.inception import build_inception
from metrics.vgg16 import build_vgg16

DETECTOR_DIR_ENV = "RLO_DETECTOR_DIR"


@dataclasses.dataclass(frozen=True)
class WeightFile:
    """One accepted file for a detector: its exact name, where it comes from, and what it is."""

    name: str
    url: str
    about: str
    sha256_prefix: str | None = None  # the digest its publisher put in the name (pytorch-fid, torchvision)


INCEPTION_FILES = (
    WeightFile(
        "inception-2015-12-05.pt",
        "https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/metrics/inception-2015-12-05.pt",
        "StyleGAN2-ADA's Inception detector (TorchScript; only its weights are read)",
    ),
    WeightFile(
        "pt_inception-2015-12-05-6726825d.pth",
        "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/pt_inception-2015-12-05-6726825d.pth",
        "pytorch-fid's FID Inception weights (state dict)",
        sha256_prefix="6726825d",
    ),
)
VGG16_FILES = (
    WeightFile(
        "vgg16.pt",
        "https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/metrics/vgg16.pt",
        "StyleGAN2-ADA's VGG16+LPIPS detector (TorchScript; only its weights are read)",
    ),
    WeightFile(
        "vgg16-397923af.pth",
        "https://download.pytorch.org/models/vgg16-397923af.pth",
        "torchvision's VGG16 weights (state dict); LPIPS (PPL, projector.py) also needs vgg.pth",
        sha256_prefix="397923af",
    ),
)
LPIPS_FILE = WeightFile(
    "vgg.pth",
    "https://github.com/richzhang/PerceptualSimilarity/raw/master/lpips/weights/v0.1/vgg.pth",
    "LPIPS v0.1 linear weights for VGG (the lpips package's lpips/weights/v0.1/vgg.pth)",
)

KINDS = {"inception": INCEPTION_FILES, "vgg16": VGG16_FILES}
TRAINED_HERE = "digits"  # metrics/digits_classifier.py: trained on the embedded digits and cached, nothing to find
NO_DETECTOR = "none"  # metrics that read the images themselves (SWD): no file


class DetectorNotFoundError(FileNotFoundError):
    """No usable detector file was found; the message says which file, where to put it and where to get it."""


class DetectorDigestError(DetectorNotFoundError):
    """A file has the name of a known detector file but not its content (sha256 against the name's digest)."""


DIGESTS_ENV = "RLO_DETECTOR_DIGESTS"  # "off": accept files whose content is not the named one (stand-ins in tests)
_digests: dict[tuple[str, int, int], str] = {}  # (path, size, mtime) -> sha256: each file hashed once a process


def check_digest(file: WeightFile, path: str) -> None:
    """DetectorDigestError, in one line, unless the file's sha256 starts with the digest its name promises."""
    if file.sha256_prefix is None or os.environ.get(DIGESTS_ENV) == "off":
        return
    stat = os.stat(path)
    key = (os.path.abspath(path), stat.st_size, stat.st_mtime_ns)
    if key not in _digests:
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
        _digests[key] = digest.hexdigest()
    if not _digests[key].startswith(file.sha256_prefix):
        raise DetectorDigestError(
            f"{path}: its sha256 begins {_digests[key][:8]}, not {file.sha256_prefix} as the name {file.name} "
            f"promises (a damaged or another file); download it again from {file.url}"
        )


def cache_detector_dir() -> str:
    """Our default folder for detector files: <cache root>/detectors."""
    return dnnlib_util.make_cache_dir_path("detectors")


def _torch_hub_checkpoints() -> str:
    return os.path.join(torch.hub.get_dir(), "checkpoints")


def search_dirs(detector_dir: str | None = None) -> list[tuple[str, str]]:
    """(label, folder) pairs searched in order; a given `detector_dir` must exist."""
    dirs = []
    if detector_dir is not None:
        if not os.path.isdir(detector_dir):
            raise DetectorNotFoundError(f"--detector-dir={detector_dir!r} is not a folder")
        dirs.append(("--detector-dir", detector_dir))
    env = os.environ.get(DETECTOR_DIR_ENV)
    if env:
        dirs.append((f"${DETECTOR_DIR_ENV}", env))
    dirs.append(("cache folder", cache_detector_dir()))
    return dirs


def _find(file: WeightFile, detector_dir: str | None, extra_dirs: tuple[str, ...] = ()) -> str | None:
    for _label, folder in search_dirs(detector_dir):
        path = os.path.join(folder, file.name)
        if os.path.isfile(path):
            return path
    try:  # the official dnnlib cache layout <cache>/downloads/<md5(url)>_<name>, ours first
        return dnnlib_util.resolve_path(file.url)
    except FileNotFoundError:
        pass
    for folder in (_torch_hub_checkpoints(), *extra_dirs):
        path = os.path.join(folder, file.name)
        if os.path.isfile(path):
            return path
    return None


def _lpips_package_dir() -> tuple[str, ...]:
    spec = importlib.util.find_spec("lpips")
    if spec is None or not spec.submodule_search_locations:
        return ()
    return tuple(os.path.join(loc, "weights", "v0.1") for loc in spec.submodule_search_locations)


def _not_found_message(
    what: str, choices: list[tuple[WeightFile, ...]], detector_dir: str | None, found: dict[str, str] | None = None
) -> str:
    """What is missing, where we looked, and every file to download: one of `choices` (a choice may need several
    files; those already `found` {name: path} are marked so), so one download round is enough."""
    names = " / ".join(dict.fromkeys(choice[0].name for choice in choices))
    lines = [f"{what}: none of {names} was found. Looked in:"]
    given = {label: folder for label, folder in search_dirs(detector_dir)}
    lines.append(f"  --detector-dir: {given.get('--detector-dir', '(not given)')}")
    lines.append(f"  ${DETECTOR_DIR_ENV}: {os.environ.get(DETECTOR_DIR_ENV) or '(not set)'}")
    lines.append(f"  {cache_detector_dir()}")
    official = os.path.expanduser(
        os.environ.get(dnnlib_util.OFFICIAL_CACHE_DIR_ENV) or os.path.join("~", ".cache", "dnnlib")
    )
    lines.append(
        f"  {os.path.join(dnnlib_util.cache_dir(), 'downloads')} and {os.path.join(official, 'downloads')} "
        "(URL caches, <md5 of URL>_<file name>)"
    )
    lines.append(f"  {_torch_hub_checkpoints()}")
    found = found or {}
    if all(len(choice) == 1 for choice in choices):
        lines.append("Nothing is downloaded at run time. On a machine with internet, download one of:")
        for (file,) in choices:
            lines.append(f"  {file.name}: {file.url}  ({file.about})")
    else:
        lines.append("Nothing is downloaded at run time. On a machine with internet, download either")
        for number, choice in enumerate(choices):
            if number:
                lines.append(f"or {'both' if len(choice) == 2 else 'all'} of" if len(choice) > 1 else "or")
            for file in choice:
                have = f"  [already found: {found[file.name]}]" if file.name in found else ""
                lines.append(f"  {file.name}: {file.url}  ({file.about}){have}")
    lines.append(
        f"and put {'it' if all(len(choice) == 1 for choice in choices) else 'the files'} in "
        f"{cache_detector_dir()} (or in a folder given by --detector-dir or ${DETECTOR_DIR_ENV})."
    )
    return "\n".join(lines)


def _default_purpose(kind: str, need_lpips: bool) -> str:
    if kind == "inception":
        return "FID, KID, IS"
    return "PPL" if need_lpips else "PPL, precision/recall"


@dataclasses.dataclass(frozen=True)
class DetectorFiles:
    """The files a detector is built from; `tag` identifies them in cache keys (name and size of each)."""

    kind: str
    path: str
    lpips_path: str | None = None

    @property
    def tag(self) -> str:
        parts = [f"{os.path.basename(self.path)}:{os.path.getsize(self.path)}"]
        if self.lpips_path is not None:
            parts.append(f"{os.path.basename(self.lpips_path)}:{os.path.getsize(self.lpips_path)}")
        return "+".join(parts)

    @property
    def short_name(self) -> str:
        """File name without extension, for cache file names ('inception-2015-12-05')."""
        return os.path.splitext(os.path.basename(self.path))[0]


def locate_detector(
    kind: str, detector_dir: str | None = None, need_lpips: bool = False, purpose: str | None = None
) -> DetectorFiles:
    """Paths of the weight files for `kind` ('inception' or 'vgg16'); DetectorNotFoundError when absent.

    `purpose` names what needs the detector in the error (default: the metrics using it, e.g. 'PPL'); with
    `need_lpips` (PPL, the projector) the error lists every file needed, LPIPS weights included.
    'digits' is never missing: the classifier is trained on first use (a few seconds on CPU) and cached.
    """
    if kind == TRAINED_HERE:
        return DetectorFiles(kind, ensure_classifier_file())
    if kind == NO_DETECTOR:
        return DetectorFiles(kind, "")
    if kind not in KINDS:
        raise ValueError(f"unknown detector kind {kind!r}; expected one of {sorted([*KINDS, TRAINED_HERE])}")
    purpose = purpose or _default_purpose(kind, need_lpips)
    for file in KINDS[kind]:
        path = _find(file, detector_dir)
        if path is None:
            continue
        check_digest(file, path)
        if kind == "vgg16" and file.name.endswith(".pth") and need_lpips:
            lpips_path = _find(LPIPS_FILE, detector_dir, extra_dirs=_lpips_package_dir())
            if lpips_path is None:
                raise DetectorNotFoundError(
                    _not_found_message(
                        f"LPIPS weights (needed by {purpose} with {path})", [(LPIPS_FILE,)], detector_dir
                    )
                    + f"\nAlternatively use {VGG16_FILES[0].name} ({VGG16_FILES[0].url}), which includes them."
                )
            return DetectorFiles(kind, path, lpips_path)
        return DetectorFiles(kind, path)
    what = f"{'Inception-v3' if kind == 'inception' else 'VGG16'} detector for {purpose}"
    if kind == "vgg16" and need_lpips:  # the state-dict route needs the LPIPS file too: name it now, not next time
        lpips_path = _find(LPIPS_FILE, detector_dir, extra_dirs=_lpips_package_dir())
        found = {LPIPS_FILE.name: lpips_path} if lpips_path else {}
        raise DetectorNotFoundError(
            _not_found_message(what, [(VGG16_FILES[0],), (VGG16_FILES[1], LPIPS_FILE)], detector_dir, found)
        )
    raise DetectorNotFoundError(_not_found_message(what, [(file,) for file in KINDS[kind]], detector_dir))


_detector_cache: dict[tuple[DetectorFiles, int, str], torch.nn.Module] = {}


def get_detector(
    kind: str,
    device: torch.device | str = "cpu",
    detector_dir: str | None = None,
    need_lpips: bool = False,
    verbose: bool = False,
    purpose: str | None = None,
) -> torch.nn.Module:
    """The detector module for `kind` on `device`, built once per (files, device) and then reused."""
    files = locate_detector(kind, detector_dir, need_lpips=need_lpips, purpose=purpose)
    key = (files, os.stat(files.path).st_mtime_ns, str(torch.device(device)))
    if key not in _detector_cache:
        if verbose:
            print(f"Loading {kind} detector from {files.path}" + (f" + {files.lpips_path}" if files.lpips_path else ""))
        if kind == "inception":
            _detector_cache[key] = build_inception(files.path, device)
        elif kind == TRAINED_HERE:
            _detector_cache[key] = build_digits_detector(files.path, device)
        else:
            _detector_cache[key] = build_vgg16(files.path, files.lpips_path, device)
    return _detector_cache[key]


def clear_detector_cache() -> None:
    """Forget built detectors (tests swap detector files between cases)."""
    _detector_cache.clear()
