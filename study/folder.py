"""A study: the same train.py runs for several variants (sets of train.py switches) and seeds, in one folder.

The study's folder: the variant grammar, the planned runs (one train.py command per variant and seed), the
manifest, and reading back where each run stands. study.plan makes the plan, study.runner runs it, study.report
reads it back.

Layout of a study folder:

    study.json                       the manifest: study options, variants, every run's train.py arguments
    runs/<variant>/seed<s>/NNNNN-*/  ordinary train.py run directories; a run killed and resumed is a chain of
                                     them (00000-..., 00001-...-resume, ...), each resuming the previous one's
                                     latest snapshot
    logs/<variant>-seed<s>.txt       what train.py printed, every attempt appended
    report/                          compare.py report STUDY: report.md, CSV tables, PNG figures

Variant grammar (one --variant each): `[name=LABEL] [LOSS] [--switch=VALUE | --switch VALUE]...`, e.g.
`ce`, `rlo --k=2`, `name=RLO-2 rlo --k 2`, `--loss=hinge --pairing=relativistic`. LOSS is a bare --loss value;
the label defaults to the loss followed by the switches (`rlo-k2`). The switches the study sets for every run
(STUDY_FLAGS) are refused in a variant.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shlex
from collections.abc import Iterable
from typing import Any

from dnnlib.files import atomic_write
from training import checkpoint

MANIFEST_NAME = "study.json"
MANIFEST_FORMAT = "rlo-stylegan2-study"
MANIFEST_VERSION = 1
RUNS_DIR, LOGS_DIR, REPORT_DIR = "runs", "logs", "report"

# train.py switches that the study sets for every run (compare.py has its own option for each, or owns them).
STUDY_FLAGS = {
    "outdir": "the study folder (compare.py --outdir)",
    "resume": "compare.py (it resumes killed runs)",
    "seed": "compare.py --seeds",
    "kimg": "compare.py --kimg",
    "tick": "compare.py --tick",
    "snap": "compare.py --snap",
    "metrics": "compare.py --metric",
    "data": "compare.py --data",
    "subset": "compare.py --subset",
    "detector_dir": "compare.py --detector-dir",
    "dry_run": "compare.py (it asks train.py to check every run before any starts)",
}
LABEL_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+=-]*$")
SNAPSHOT_RE = re.compile(r"^network-snapshot-(\d{6,})(?:-(\d{3}))?\.pt$")
RUN_DIR_RE = re.compile(r"^(\d+)-")


class StudyError(ValueError):
    """A study that cannot be planned, continued or read; the message names the variant, option or file."""


# ----------------------------------------------------------------------------------------------------
# Variants.


@dataclasses.dataclass(frozen=True)
class Variant:
    """One arm of the study: a label (a folder name) and its train.py switches ('--name=value' each)."""

    label: str
    spec: str
    args: tuple[str, ...]


def flag_key(arg: str) -> str:
    """'--detector-dir=x' -> 'detector_dir' (train.py's parameter name)."""
    return arg[2:].split("=", 1)[0].replace("-", "_")


def split_switches(tokens: Iterable[str], where: str) -> list[str]:
    """['--k', '2', '--m=3'] -> ['--k=2', '--m=3']; every train.py switch takes a value."""
    tokens = list(tokens)
    out, i = [], 0
    while i < len(tokens):
        token = tokens[i]
        if not token.startswith("--") or token == "--":
            raise StudyError(f"{where}: {token!r} is not a train.py switch (--name=value)")
        if "=" not in token:
            if i + 1 >= len(tokens) or tokens[i + 1].startswith("--"):
                raise StudyError(f"{where}: {token} needs a value ({token}=VALUE)")
            token, i = f"{token}={tokens[i + 1]}", i + 1
        out.append(token)
        i += 1
    return out


def refuse_study_flags(args: Iterable[str], where: str) -> None:
    for arg in args:
        key = flag_key(arg)
        if key in STUDY_FLAGS:
            raise StudyError(
                f"{where}: --{key.replace('_', '-')} is set for every run of the study by "
                f"{STUDY_FLAGS[key]}; leave it out of the variant"
            )


def _label_part(arg: str) -> str:
    key, _, value = arg[2:].partition("=")
    value = re.sub(r"[^A-Za-z0-9.+-]+", "_", value)
    return f"{key}_{value}" if key[-1:].isdigit() else f"{key}{value}"


def parse_variant(spec: str) -> Variant:
    """`[name=LABEL] [LOSS] [--switch=VALUE | --switch VALUE]...` -> Variant; StudyError naming the spec."""
    where = f"--variant {spec!r}"
    try:
        tokens = shlex.split(spec)
    except ValueError as err:
        raise StudyError(f"{where}: {err}") from None
    if not tokens:
        raise StudyError(f'{where}: empty; give a loss and/or train.py switches, e.g. "rlo --k=2"')
    label = None
    if tokens[0].startswith("name="):
        label = tokens.pop(0)[len("name=") :]
        if not LABEL_RE.match(label):
            raise StudyError(
                f"{where}: the label {label!r} must be a folder name: letters, digits and ._+=- "
                "(not starting with a dot or dash)"
            )
    loss = None
    if tokens and not tokens[0].startswith("-"):
        loss = tokens.pop(0)
        if "=" in loss:
            raise StudyError(f"{where}: {loss!r}: name=LABEL comes first; then the loss, then --switches")
    args = split_switches(tokens, where)
    refuse_study_flags(args, where)
    if loss is not None:
        if any(flag_key(a) == "loss" for a in args):
            raise StudyError(f"{where}: the loss is given twice ({loss!r} and --loss)")
        args.insert(0, f"--loss={loss}")
    keys = [flag_key(a) for a in args]
    for key in keys:
        if keys.count(key) > 1:
            raise StudyError(f"{where}: --{key.replace('_', '-')} is given twice")
    if label is None:
        loss_value = next((a.split("=", 1)[1] for a in args if flag_key(a) == "loss"), "ce")
        label = "-".join(
            [re.sub(r"[^A-Za-z0-9.+-]+", "_", loss_value)] + [_label_part(a) for a in args if flag_key(a) != "loss"]
        )
    return Variant(label=label, spec=spec, args=tuple(args))


def parse_variants(specs: Iterable[str]) -> list[Variant]:
    variants = [parse_variant(spec) for spec in specs]
    if not variants:
        raise StudyError("no --variant given")
    seen: dict[str, str] = {}
    for variant in variants:
        if variant.label in seen:
            raise StudyError(
                f"--variant {variant.spec!r} and --variant {seen[variant.label]!r} both have the label "
                f"{variant.label!r}; name one with name=LABEL"
            )
        seen[variant.label] = variant.spec
    return variants


def merge_args(common: Iterable[str], own: Iterable[str]) -> list[str]:
    """Study-wide switches, then the variant's; a switch the variant gives replaces the study-wide one."""
    own = list(own)
    mine = {flag_key(a) for a in own}
    return [a for a in common if flag_key(a) not in mine] + own


# ----------------------------------------------------------------------------------------------------
# The plan and the manifest.


@dataclasses.dataclass(frozen=True)
class PlannedRun:
    """One train.py run of the study. `outdir` is relative to the study folder (train.py runs there)."""

    index: int
    variant: str
    seed: int
    outdir: str
    args: tuple[str, ...]  # train.py switches, without --outdir and --resume
    total_kimg: float  # as train.py resolved them (the study's --kimg, or the config's default)
    kimg_per_tick: float
    desc: str  # train.py's run description (data, cfg, loss, augmentation)

    @property
    def target_nimg(self) -> int:
        return round(self.total_kimg * 1000)

    @property
    def name(self) -> str:
        return f"{self.variant} seed {self.seed}"

    def log_path(self, study_dir: str) -> str:
        return os.path.join(study_dir, LOGS_DIR, f"{self.variant}-seed{self.seed}.txt")


def run_outdir(variant: str, seed: int) -> str:
    return f"{RUNS_DIR}/{variant}/seed{seed}"


def manifest_dict(
    study: dict[str, Any],
    variants: list[Variant],
    runs: list[PlannedRun],
    command: str,
    detector_dir: str | None = None,
    code: str | None = None,
) -> dict[str, Any]:
    """The JSON manifest. `study` holds the study-wide options; `runs` every train.py command (without
    --detector-dir, a property of the machine, recorded beside them: a rerun may give another one); `code` the
    commit that planned it (dnnlib.util.source_version)."""
    return dict(
        format=MANIFEST_FORMAT,
        version=MANIFEST_VERSION,
        command=command,
        code=code,
        detector_dir=detector_dir,
        study=dict(study),
        variants=[dict(label=v.label, spec=v.spec, args=list(v.args)) for v in variants],
        runs=[
            dict(
                variant=r.variant,
                seed=r.seed,
                outdir=r.outdir,
                args=list(r.args),
                total_kimg=r.total_kimg,
                kimg_per_tick=r.kimg_per_tick,
                desc=r.desc,
            )
            for r in runs
        ],
    )


def runs_of_manifest(manifest: dict[str, Any]) -> list[PlannedRun]:
    for r in manifest.get("runs") or []:
        outdir = r.get("outdir") if isinstance(r, dict) else None
        if not isinstance(outdir, str) or os.path.isabs(outdir) or ".." in outdir.replace("\\", "/").split("/"):
            raise StudyError(f"{MANIFEST_NAME}: run folder {outdir!r} is not a path inside the study folder")
    try:
        return [
            PlannedRun(
                index=i,
                variant=r["variant"],
                seed=int(r["seed"]),
                outdir=r["outdir"],
                args=tuple(r["args"]),
                total_kimg=float(r["total_kimg"]),
                kimg_per_tick=float(r["kimg_per_tick"]),
                desc=r["desc"],
            )
            for i, r in enumerate(manifest["runs"])
        ]
    except (KeyError, TypeError, ValueError) as err:
        raise StudyError(f"{MANIFEST_NAME}: a run entry is malformed ({type(err).__name__}: {err})") from None


def read_manifest(study_dir: str) -> dict[str, Any] | None:
    """The manifest of a study folder, None when there is none; StudyError when it does not read."""
    path = os.path.join(study_dir, MANIFEST_NAME)
    if not os.path.isfile(path):
        return None
    try:
        with open(path, encoding="utf-8") as file:
            manifest = json.load(file)
    except (OSError, json.JSONDecodeError) as err:
        raise StudyError(f"{path} does not read as JSON ({err})") from None
    except RecursionError:
        raise StudyError(f"{path}: JSON nested too deeply to be a study manifest") from None
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        raise StudyError(f'{path} is not a study manifest (no "format": "{MANIFEST_FORMAT}")')
    if not isinstance(manifest.get("version"), int) or manifest["version"] > MANIFEST_VERSION:
        raise StudyError(
            f"{path} has manifest version {manifest.get('version')!r}; this code reads up to {MANIFEST_VERSION}"
        )
    return manifest


def write_manifest(study_dir: str, manifest: dict[str, Any]) -> None:
    text = json.dumps(manifest, indent=2) + "\n"
    atomic_write(os.path.join(study_dir, MANIFEST_NAME), lambda f: f.write(text.encode()))


GROWING_KEYS = ("seeds",)  # study-wide options that may grow on an existing study (more runs, none changed)


def merge_manifests(stored: dict[str, Any], new: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """(the study grown by `new`, what no growth can do). A study grows by seeds and by variants: every finished
    or planned run of `stored` is kept as it was, runs of `new` that `stored` lacks are appended, and the seeds
    and variants are the union (stored first). What would change a run of `stored` is refused: another value of
    a study-wide option (data, subset, kimg, tick, snap, metric, train_args), a variant label with other switches,
    or a run that train.py now resolves otherwise."""
    problems = []
    stored_study, new_study = stored.get("study", {}), new["study"]
    for key in sorted(set(stored_study) | set(new_study)):
        before, after = stored_study.get(key), new_study.get(key)
        if key not in GROWING_KEYS and before != after:
            problems.append(f"{key} {json.dumps(before)} there, {json.dumps(after)} now")
    stored_variants = {v.get("label"): v for v in stored.get("variants", [])}
    for variant in new["variants"]:
        old = stored_variants.get(variant["label"])
        if old is not None and old.get("args") != variant["args"]:
            problems.append(
                f"variant {variant['label']}: {' '.join(old.get('args') or [])} there, {' '.join(variant['args'])} "
                "now (another label adds it as a new variant)"
            )
    old_runs = {(r.get("variant"), r.get("seed")): r for r in stored.get("runs", [])}
    for run in new["runs"]:
        old = old_runs.get((run["variant"], run["seed"]))
        if old is None:
            continue
        for key in ("args", "total_kimg", "kimg_per_tick", "desc"):
            if old.get(key) != run[key]:
                problems.append(
                    f"{run['variant']} seed {run['seed']}: train.py resolves {key} to {json.dumps(run[key])} now, "
                    f"{json.dumps(old.get(key))} there (another machine or code version?)"
                )
                break
    merged = dict(stored)
    if "report" in new:  # the report settings of the latest command
        merged["report"] = new["report"]
    merged["study"] = dict(stored_study, seeds=sorted(set(stored_study.get("seeds", [])) | set(new_study["seeds"])))
    merged["variants"] = list(stored.get("variants", [])) + [
        v for v in new["variants"] if v["label"] not in stored_variants
    ]
    merged["runs"] = list(stored.get("runs", [])) + [
        r for r in new["runs"] if (r["variant"], r["seed"]) not in old_runs
    ]
    order = {v["label"]: i for i, v in enumerate(merged["variants"])}  # seed-major, variants in order, as planned
    merged["runs"].sort(key=lambda r: (r["seed"], order.get(r["variant"], len(order))))
    grown = len(merged["runs"]) > len(stored.get("runs", []))
    if grown:
        code = f" (code {new['code']})" if new.get("code") and new.get("code") != stored.get("code") else ""
        merged["extended_by"] = list(stored.get("extended_by", [])) + [f"{new.get('command')}{code}"]
    return merged, problems


# ----------------------------------------------------------------------------------------------------
# Where a run stands: its chain of run directories, snapshots, ticks and scores.


@dataclasses.dataclass(frozen=True)
class Snapshot:
    run_dir: str
    name: str
    kimg: int  # the kimg in the file name (cur_nimg // 1000)
    img: int | None  # the images past it, in names of runs with ticks shorter than 1 kimg

    @property
    def path(self) -> str:
        return os.path.join(self.run_dir, self.name)

    @property
    def stem(self) -> str:
        return self.name[len("network-snapshot-") : -len(".pt")]


@dataclasses.dataclass(frozen=True)
class Tick:
    """One stats.jsonl line: training progress and time at the end of a tick."""

    nimg: int
    total_sec: float
    sec_per_tick: float | None
    tick: int | None


@dataclasses.dataclass
class Segment:
    """The part of one run directory that belongs to the run: everything up to the snapshot the next one resumed
    from (all of it for the last directory)."""

    run_dir: str
    snapshots: list[Snapshot]
    ticks: list[Tick]
    until: str | None = None  # snapshot name the next segment resumed from


def list_snapshots(run_dir: str) -> list[Snapshot]:
    """network-snapshot-*.pt of a run directory in training order (temporary files of a killed write excluded)."""
    found = []
    for name in os.listdir(run_dir) if os.path.isdir(run_dir) else []:
        match = SNAPSHOT_RE.match(name)
        if match:
            img = None if match.group(2) is None else int(match.group(2))
            found.append(Snapshot(run_dir, name, int(match.group(1)), img))
    return sorted(found, key=lambda s: (s.kimg, s.img or 0))


def read_ticks(run_dir: str) -> list[Tick]:
    """stats.jsonl lines (a line cut short by a kill is skipped)."""
    path = os.path.join(run_dir, "stats.jsonl")
    ticks = []
    if not os.path.isfile(path):
        return ticks
    with open(path, encoding="utf-8", errors="replace") as file:
        for line in file:
            try:
                entry = json.loads(line)
                nimg = round(float(entry["Progress/kimg"]["mean"]) * 1000)
                total = float(entry["Timing/total_sec"]["mean"])
            except (json.JSONDecodeError, KeyError, TypeError, ValueError):
                continue
            per_tick = entry.get("Timing/sec_per_tick", {}).get("mean")
            tick = entry.get("Progress/tick", {}).get("mean")
            ticks.append(
                Tick(
                    nimg,
                    total,
                    None if per_tick is None else float(per_tick),
                    None if tick is None else int(round(tick)),
                )
            )
    return ticks


def _run_dirs(outdir: str) -> dict[str, str]:
    """{name: path} of the train.py run directories in `outdir` that got as far as their training_options.json."""
    if not os.path.isdir(outdir):
        return {}
    return {
        name: os.path.join(outdir, name)
        for name in os.listdir(outdir)
        if RUN_DIR_RE.match(name) and os.path.isfile(os.path.join(outdir, name, "training_options.json"))
    }


def _resumed_from(run_dir: str) -> tuple[str, str] | None:
    """(run directory name, snapshot name) that this run directory resumed from, or None for a fresh start."""
    try:
        with open(os.path.join(run_dir, "training_options.json"), encoding="utf-8") as file:
            resume = json.load(file).get("resume")
    except (OSError, json.JSONDecodeError, AttributeError):
        return None
    if not resume:
        return None
    parts = os.path.normpath(resume).split(os.sep)
    return (parts[-2], parts[-1]) if len(parts) >= 2 else None


def run_chain(outdir: str) -> list[Segment]:
    """The segments of a run, oldest first, following resume links back from the newest run directory.

    A directory no later run resumed from (a restart that died before its first snapshot) is not in the chain.
    """
    dirs = _run_dirs(outdir)
    if not dirs:
        return []
    current = max(dirs, key=lambda name: int(RUN_DIR_RE.match(name).group(1)))
    chain, until, seen = [], None, set()
    while current is not None and current in dirs and current not in seen:
        seen.add(current)
        path = dirs[current]
        snapshots, ticks = list_snapshots(path), read_ticks(path)
        if until is not None:
            names = [s.name for s in snapshots]
            if until not in names:
                break  # the next segment resumed from a file that is gone: the chain starts there
            cut = snapshots[names.index(until)]
            snapshots = snapshots[: names.index(until) + 1]
            limit = snapshot_nimg(cut, ticks)
            ticks = [t for t in ticks if t.nimg <= limit]
        chain.append(Segment(path, snapshots, ticks, until))
        link = _resumed_from(path)
        current, until = link if link is not None else (None, None)
    return chain[::-1]


def snapshot_nimg(snapshot: Snapshot, ticks: list[Tick] | None = None) -> int:
    """Images seen when the snapshot was taken: from its name, the tick it was taken at, or the file itself."""
    if snapshot.img is not None:
        return snapshot.kimg * 1000 + snapshot.img
    matches = [t.nimg for t in ticks or [] if t.nimg // 1000 == snapshot.kimg]
    if len(set(matches)) == 1:
        return matches[0]
    return int(_resume_state(snapshot)["cur_nimg"])


def snapshot_total_sec(snapshot: Snapshot, ticks: list[Tick]) -> float:
    """Timing/total_sec when the snapshot was taken (the stats line of its tick, else the snapshot's own record,
    for a run killed between writing the snapshot and its stats line)."""
    nimg = snapshot_nimg(snapshot, ticks)
    for tick in ticks:
        if tick.nimg == nimg:
            return tick.total_sec
    return float(_resume_state(snapshot).get("total_sec", float("nan")))


def _resume_state(snapshot: Snapshot) -> dict[str, Any]:
    state = checkpoint.load_network(snapshot.path).get("resume_state")
    if not state:
        raise StudyError(f"{snapshot.path} holds no training state (counters); it is not a snapshot of a train.py run")
    return state


def scored_snapshots(run_dir: str, metric: str) -> set[str]:
    """File names of the snapshots that metric-<metric>.jsonl of the run directory has a line for."""
    path = os.path.join(run_dir, f"metric-{metric}.jsonl")
    names = set()
    if os.path.isfile(path):
        with open(path, encoding="utf-8", errors="replace") as file:
            for line in file:
                try:
                    snapshot = json.loads(line).get("snapshot_pkl")
                except (json.JSONDecodeError, AttributeError):
                    continue
                if snapshot:
                    names.add(os.path.basename(snapshot))
    return names


@dataclasses.dataclass
class RunState:
    """Where a planned run stands. status: 'new' (nothing to resume), 'partial' (resume from `latest`) or 'done'."""

    status: str
    latest: Snapshot | None
    nimg: int  # images trained so far (at `latest`)
    unscored: bool  # `latest` has no metric line yet (killed while scoring it)
    chain: list[Segment]


def run_state(study_dir: str, run: PlannedRun, metric: str | None) -> RunState:
    chain = run_chain(os.path.join(study_dir, run.outdir))
    latest, ticks = None, []
    for segment in chain:
        if segment.snapshots:
            latest, ticks = segment.snapshots[-1], segment.ticks
    if latest is None:
        return RunState("new", None, 0, False, chain)
    nimg = snapshot_nimg(latest, ticks)
    unscored = metric is not None and latest.name not in scored_snapshots(latest.run_dir, metric)
    return RunState("done" if nimg >= run.target_nimg else "partial", latest, nimg, unscored, chain)


# ----------------------------------------------------------------------------------------------------
# Small helpers for the command line.


def format_duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h {minutes:02d}m" if hours else (f"{minutes}m {secs:02d}s" if minutes else f"{secs}s")


def relpath_within(path: str, root: str) -> str:
    """`path` relative to `root` (train.py runs inside the study folder, so the study can be moved)."""
    return os.path.relpath(os.path.abspath(path), os.path.abspath(root))


def default_snap(total_kimg: float, kimg_per_tick: float, evaluations: int = 6) -> int:
    """Snapshot interval in ticks giving about `evaluations` evaluations after the one at the start."""
    ticks = max(1, -(-round(total_kimg * 1000) // max(1, round(kimg_per_tick * 1000))))
    return max(1, -(-ticks // evaluations))
