"""The four binary problems of the paper's Table 1, read from the UCI files (Wine from scikit-learn's copy).

Every loader returns a :class:`BinaryDataset` with features ``x`` [N, d] float64 and labels ``y`` [N] int64 in
{-1, +1}. The raw files are read as published, quirks included (see ``shared/data/README.md``):

- Ionosphere (Sigillito): 351 x 34, class ``g`` (good) -> +1, ``b`` (bad) -> -1.
- SPECTF heart, the paper's "Specheart" (Kurgan & Cios): SPECTF.train (80) and SPECTF.test (187) are joined into
  one 267 x 44 set before the 5-fold split, because the paper cross-validates; label 1 (abnormal) -> +1,
  0 -> -1. CRLF endings and ", " separators are tolerated.
- Madelon (Guyon, NIPS 2003): madelon_train + madelon_valid joined, 2600 x 500; labels are already +-1. The test
  split has no public labels, so it is not used. Trailing spaces on every line are tolerated.
- Wine (Forina et al.): scikit-learn's bundled copy (no file needed), 178 x 13 with 3 cultivars. We make it
  binary as cultivar 1 (sklearn class 0, 59 samples) -> +1 versus cultivars 2 and 3 (119) -> -1.

Where the files are looked for (:func:`search_dirs`): a folder passed as ``data_dir`` (``--data-dir``) is the only
place searched, so a folder you name is the folder read. Otherwise, in order: ``$RLO_UCI_DIR``, then
``$RLO_SHARED_DIR/data/uci`` (each when set), then ``../shared/data/uci`` relative to the current directory (the
checkout's sibling ``shared/`` when run from the repository root). A dataset is read from the first folder that holds
all of its files; none of these depends on where the package is installed.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
from collections.abc import Callable, Sequence

import numpy as np

DATA_DIR_ENV = "RLO_UCI_DIR"
SHARED_DIR_ENV = "RLO_SHARED_DIR"
UCI_URL = "https://archive.ics.uci.edu/"
SHARED_FALLBACK = "../shared/data/uci"  # relative to the current directory
SPECHEART_ALIAS = "specheart"  # the paper's name for SPECTF heart
# The files each file-backed dataset needs, all from one folder, and its title on the UCI repository.
DATASET_FILES: dict[str, tuple[str, tuple[str, ...]]] = {
    "ionosphere": ("Ionosphere", ("ionosphere.data",)),
    "spectf": ("SPECT Heart", ("SPECTF.train", "SPECTF.test")),
    "madelon": (
        "Madelon",
        ("madelon_train.data", "madelon_train.labels", "madelon_valid.data", "madelon_valid.labels"),
    ),
}
WINE_POSITIVE_CLASS = 0  # sklearn's class 0 is cultivar 1 in wine.data

PathLike = str | os.PathLike


@dataclasses.dataclass(frozen=True)
class BinaryDataset:
    """A binary classification problem: x [N, d] float64, y [N] int64 in {-1, +1}."""

    name: str
    x: np.ndarray
    y: np.ndarray
    source: str

    def __post_init__(self):
        if self.x.ndim != 2 or self.y.shape != (self.x.shape[0],):
            raise ValueError(f"{self.name}: x must be [N, d] and y [N], got {self.x.shape} and {self.y.shape}")
        if not set(np.unique(self.y).tolist()) <= {-1, 1}:
            raise ValueError(f"{self.name}: labels must be -1/+1, found {np.unique(self.y).tolist()}")


def search_dirs(data_dir: PathLike | None = None) -> list[tuple[str, pathlib.Path]]:
    """The folders searched for the UCI files, in order, each as (where it came from, folder).

    ``data_dir`` given: only that folder. Otherwise ``$RLO_UCI_DIR`` and ``$RLO_SHARED_DIR/data/uci`` when set, then
    ``../shared/data/uci`` under the current directory (read when called, not at import).
    """
    if data_dir is not None:
        return [("--data-dir", pathlib.Path(data_dir))]
    places = []
    if os.environ.get(DATA_DIR_ENV):
        places.append((f"${DATA_DIR_ENV}", pathlib.Path(os.environ[DATA_DIR_ENV])))
    if os.environ.get(SHARED_DIR_ENV):
        places.append((f"${SHARED_DIR_ENV}/data/uci", pathlib.Path(os.environ[SHARED_DIR_ENV]) / "data" / "uci"))
    places.append(
        (
            f"{SHARED_FALLBACK} from the current directory",
            pathlib.Path(os.path.normpath(pathlib.Path.cwd() / SHARED_FALLBACK)),
        )
    )
    return places


def locate(dataset: str, data_dir: PathLike | None = None) -> pathlib.Path:
    """The first folder of :func:`search_dirs` holding every file of ``dataset``; else FileNotFoundError naming
    each folder searched, what it lacks, and what to put where."""
    title, names = DATASET_FILES[dataset]
    searched = []
    for origin, folder in search_dirs(data_dir):
        missing = [name for name in names if not (folder / name).is_file()]
        if not missing:
            return folder
        lacks = "no such folder" if not folder.is_dir() else f"lacks {', '.join(missing)}"
        searched.append(f"{folder} ({origin}: {lacks})")
    raise FileNotFoundError(
        f"{dataset} needs {', '.join(names)} in one folder; searched {'; '.join(searched)}. Download them from the "
        f"UCI Machine Learning Repository ({UCI_URL}, dataset '{title}') and put them in a folder passed as "
        f"--data-dir=DIR, or in ${DATA_DIR_ENV}, ${SHARED_DIR_ENV}/data/uci or {SHARED_FALLBACK} "
        f"(relative to the current directory)."
    )


def _read_rows(path: pathlib.Path) -> list:
    """Non-empty lines split on commas and/or whitespace (handles CRLF, ', ' and trailing spaces)."""
    rows = []
    for line_no, line in enumerate(path.read_text().splitlines(), start=1):
        fields = line.replace(",", " ").split()
        if fields:
            rows.append((line_no, fields))
    if not rows:
        raise ValueError(f"{path}: file holds no data rows")
    return rows


def _to_matrix(path: pathlib.Path, rows: list, columns: int) -> np.ndarray:
    for line_no, fields in rows:
        if len(fields) != columns:
            raise ValueError(f"{path}:{line_no}: expected {columns} fields, found {len(fields)}")
    try:
        return np.array([fields for _, fields in rows], dtype=np.float64)
    except ValueError as error:
        raise ValueError(f"{path}: non-numeric field ({error})") from None


def load_ionosphere(data_dir: PathLike | None = None) -> BinaryDataset:
    """Ionosphere: 351 x 34 radar returns; 'g' -> +1, 'b' -> -1."""
    path = locate("ionosphere", data_dir) / "ionosphere.data"
    rows = _read_rows(path)
    labels = []
    for line_no, fields in rows:
        if fields[-1] not in ("g", "b"):
            raise ValueError(f"{path}:{line_no}: class must be 'g' or 'b', found {fields[-1]!r}")
        labels.append(1 if fields[-1] == "g" else -1)
    x = _to_matrix(path, [(n, f[:-1]) for n, f in rows], 34)
    return BinaryDataset("ionosphere", x, np.array(labels, dtype=np.int64), str(path))


def load_spectf(data_dir: PathLike | None = None) -> BinaryDataset:
    """SPECTF heart ("Specheart"): SPECTF.train + SPECTF.test, 267 x 44; label 1 -> +1, 0 -> -1."""
    data_dir = locate("spectf", data_dir)
    parts = []
    for name in DATASET_FILES["spectf"][1]:
        path = data_dir / name
        parts.append(_to_matrix(path, _read_rows(path), 45))
    table = np.concatenate(parts)
    labels = table[:, 0]
    if not np.isin(labels, (0, 1)).all():
        raise ValueError(f"{data_dir}/SPECTF.*: labels must be 0/1, found {np.unique(labels).tolist()}")
    return BinaryDataset(
        "spectf", table[:, 1:], np.where(labels > 0, 1, -1).astype(np.int64), str(data_dir / "SPECTF.{train,test}")
    )


def _read_madelon_split(data_dir: pathlib.Path, split: str) -> tuple:
    data_path = data_dir / f"madelon_{split}.data"
    label_path = data_dir / f"madelon_{split}.labels"
    values = np.array(data_path.read_text().split(), dtype=np.float64)
    labels = np.array(label_path.read_text().split(), dtype=np.float64).astype(np.int64)
    if values.size != labels.size * 500:
        raise ValueError(
            f"{data_path}: expected {labels.size} rows x 500 features (from {label_path.name}), "
            f"found {values.size} values"
        )
    if not np.isin(labels, (-1, 1)).all():
        raise ValueError(f"{label_path}: labels must be -1/+1, found {np.unique(labels).tolist()}")
    return values.reshape(labels.size, 500), labels


def load_madelon(data_dir: PathLike | None = None) -> BinaryDataset:
    """Madelon: train (2000) + valid (600) = 2600 x 500 integer features, labels +-1."""
    data_dir = locate("madelon", data_dir)
    x_train, y_train = _read_madelon_split(data_dir, "train")
    x_valid, y_valid = _read_madelon_split(data_dir, "valid")
    return BinaryDataset(
        "madelon",
        np.concatenate([x_train, x_valid]),
        np.concatenate([y_train, y_valid]),
        str(data_dir / "madelon_{train,valid}.{data,labels}"),
    )


def load_wine(data_dir: PathLike | None = None) -> BinaryDataset:
    """Wine from scikit-learn's bundled copy, 178 x 13: cultivar 1 -> +1, cultivars 2 and 3 -> -1.

    ``data_dir`` is accepted for a uniform signature and ignored: no file is needed.
    """
    # Deferred: importing sklearn.datasets takes 1.1-1.7 s after torch (measured, 3 runs), and only Wine needs it.
    from sklearn.datasets import load_wine as sklearn_load_wine

    bunch = sklearn_load_wine()
    y = np.where(bunch.target == WINE_POSITIVE_CLASS, 1, -1).astype(np.int64)
    return BinaryDataset("wine", np.asarray(bunch.data, dtype=np.float64), y, "sklearn.datasets.load_wine")


LOADERS: dict[str, Callable[[PathLike | None], BinaryDataset]] = {
    "wine": load_wine,
    "ionosphere": load_ionosphere,
    "madelon": load_madelon,
    "spectf": load_spectf,
}
DATASET_NAMES = tuple(LOADERS)


def canonical_name(name: str) -> str:
    """The key of :data:`LOADERS` for ``name`` (any case; 'specheart' is 'spectf'); ValueError naming the value."""
    key = "spectf" if name.lower() == SPECHEART_ALIAS else name.lower()
    if key not in LOADERS:
        raise ValueError(
            f"unknown dataset {name!r}; choose from {', '.join(DATASET_NAMES)} ({SPECHEART_ALIAS!r} is "
            f"accepted for 'spectf')"
        )
    return key


def load_dataset(name: str, data_dir: PathLike | None = None) -> BinaryDataset:
    """One of :data:`DATASET_NAMES` ('specheart' is accepted for 'spectf')."""
    return LOADERS[canonical_name(name)](data_dir)


def load_datasets(names: Sequence[str], data_dir: PathLike | None = None) -> dict[str, BinaryDataset]:
    return {dataset.name: dataset for dataset in (load_dataset(name, data_dir) for name in names)}
