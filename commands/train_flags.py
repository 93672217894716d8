"""train.py's flags: their defaults (TrainFlags, the one place they are written), their checks, their replay when
a run resumes, and the TrainingOptions they build. The engine side of the command line: train.py and compare.py
parse flags with commands/train_command.py's parser and build a run's options here."""

from __future__ import annotations

import dataclasses
import sys
from typing import Any

import click
import torch

import rlo
from dnnlib import util as dnnlib_util
from metrics import detectors, digits_metrics, metric_main
from metrics.weight_files import DetectorFormatError
from training import checkpoint, network_bounds, network_transfer
from training import options as options_lib
from training.dataset import DatasetError, open_dataset
from training.diffaugment import DEFAULT_POLICY, parse_policy
from training.networks import Discriminator, Generator
from training.options import (
    AugmentOptions,
    DataOptions,
    LossOptions,
    OptimizerOptions,
    TrainingOptions,
)

AUG_MODES = ("noaug", "ada", "fixed", "diffaug")
LOSS_NAMES = rlo.loss_names("binary")  # every member of the family with a binary form
OPTIMIZER_SNAPSHOTS = ("latest", "all")
DECODE_CHECK_SAMPLE = 256  # images fully decoded before a run starts (plus the first and last; headers: all)


class UserError(click.UsageError):
    """An invalid flag or flag combination, reported before anything runs."""


@dataclasses.dataclass
class TrainFlags:
    """train.py's flags with their defaults (the one place they are written); stored in every run's options."""

    data: str | None = None
    gpus: int = 1
    batch: int | None = None
    batch_gpu: int | None = None
    cfg: str = "auto"
    gamma: float | None = None
    kimg: float | None = None
    tick: float | None = None
    snap: int = 50
    metrics: str | None = None
    detector_dir: str | None = None
    seed: int = 0
    cond: bool = False
    subset: int | None = None
    mirror: bool = False
    aug: str | None = None
    p: float | None = None
    target: float | None = None
    augpipe: str | None = None
    resume: str | None = None
    freezed: int = 0
    fp32: bool = False
    nhwc: bool = False
    allow_tf32: bool = False
    nobench: bool = False
    workers: int | None = None
    loss: str = "ce"
    k: float | None = None
    m: float | None = None
    glr: float | None = None
    dlr: float | None = None
    cbase: int | None = None
    cmax: int | None = None
    map_depth: int | None = None
    mbstd_group: int | None = None
    blur: float = 0.0
    ema: float | None = None
    ema_rampup: float | None = None
    pairing: str = "standard"
    g_selfnorm: bool = False
    r2: float = 0.0
    lecam: float = 0.0
    diffaug_policy: str | None = None
    optim_state: str = "latest"


DEFAULTS = TrainFlags()
# Flags that describe the machine, not the run: a resumed run takes them from its own command line.
MACHINE_FLAGS = frozenset({"gpus", "batch_gpu", "workers", "nobench", "allow_tf32", "nhwc", "resume"})
# Flags whose meaning depends on another: when a resumed run switches the first, the others are not replayed.
DEPENDENT_FLAGS = {"loss": ("k", "m"), "aug": ("p", "target", "augpipe", "diffaug_policy")}
# Flags that fix network shapes; with --resume the networks come from the file instead.
ARCHITECTURE_FLAGS = {"cbase": "channel_base", "cmax": "channel_max", "map_depth": "num_layers"}
# Flags that change what fine-tuned networks compute (network_transfer.FUNCTION_KEYS): given, they replace the
# pickle's value; not given, the pickle's value stays.
FUNCTION_FLAGS = {"mbstd_group": "mbstd_group_size"}
# Why a fine-tuned network's kwarg differs from the pickle's, by kwarg.
KWARG_REASONS = {
    "img_resolution": "this dataset",
    "img_channels": "this dataset",
    "c_dim": "this dataset's labels, --cond",
    "num_fp16_res": "precision follows this run and device: --cfg, --fp32",
    "fp16_channels_last": "memory layout follows this run: --nhwc",
    "freeze_layers": "--freezed",
    "mbstd_group_size": "--mbstd-group",
}


def _parse_comma_list(text: str | None) -> list[str]:
    if text is None or text.lower() == "none" or text == "":
        return []
    return [item for item in text.split(",") if item]


# ----------------------------------------------------------------------------------------------------
# The resume file and what it fixes.


@dataclasses.dataclass
class ResumeSource:
    """A loaded --resume file: our snapshot (continues its run) or an official pickle (fine-tuning)."""

    path: str
    kind: str  # 'snapshot' or 'official'
    networks: dict[str, Any]  # checkpoint.load_network's result
    stored: TrainingOptions | None  # the options of the run that wrote a snapshot
    notes: list[str] = dataclasses.field(default_factory=list)  # what changes, announced at the start

    @property
    def resume_state(self) -> dict[str, Any] | None:
        return self.networks.get("resume_state")

    @property
    def cur_nimg(self) -> int:
        return int(self.resume_state["cur_nimg"]) if self.resume_state else 0

    @property
    def kimg_text(self) -> str:
        return f"kimg {self.cur_nimg / 1000:g}"


def open_resume(path: str) -> ResumeSource:
    try:
        data = checkpoint.load_network(path)
        kind = checkpoint.snapshot_kind(dnnlib_util.resolve_path(path))
    except (checkpoint.CheckpointError, FileNotFoundError, OSError) as err:
        raise UserError(f"--resume={path}: {err}") from None
    stored = None
    options_json = (data.get("resume_state") or {}).get("training_options_json")
    if options_json:
        try:
            stored = TrainingOptions.from_json(options_json)
        except (ValueError, TypeError) as err:
            raise UserError(f"--resume={path}: the stored training options do not read back ({err})") from None
    return ResumeSource(path=path, kind=kind, networks=data, stored=stored)


def flags_of_legacy_run(stored: TrainingOptions) -> dict[str, Any]:
    """The flags of a run saved before snapshots recorded them, rebuilt from its options."""
    adversarial, aug = stored.loss.adversarial, stored.augment
    flags = dict(
        data=stored.data.path,
        cond=stored.data.use_labels,
        subset=stored.data.max_size,
        mirror=stored.data.xflip,
        seed=stored.random_seed,
        loss=adversarial.name,
        aug=aug.mode,
        cfg=stored.cfg if stored.cfg in options_lib.CFG_NAMES else "auto",
        kimg=stored.total_kimg,
        metrics=",".join(stored.metrics) or "none",
    )
    if adversarial.is_rooted:
        flags.update(k=adversarial.k, m=adversarial.m)
    if aug.mode == "fixed":
        flags["p"] = aug.p
    if aug.mode != "noaug":
        flags["augpipe"] = aug.pipe
    return flags


def replay_flags(resume: ResumeSource, given: dict[str, Any]) -> dict[str, Any]:
    """The resumed run's flags: those given now, else the stored run's (machine flags are never replayed)."""
    assert resume.stored is not None
    stored = resume.stored.cli_flags or flags_of_legacy_run(resume.stored)
    merged = {key: value for key, value in stored.items() if key not in MACHINE_FLAGS and key in DEFAULTS.__dict__}
    for switch, dependents in DEPENDENT_FLAGS.items():  # e.g. --loss=ce on an rlo-k2 run: k belongs to the old loss
        if switch in given and given[switch] != stored.get(switch):
            for key in dependents:
                merged.pop(key, None)
    merged.update(given)
    return merged


def announce_changes(resume: ResumeSource, opts: TrainingOptions) -> None:
    """One line per setting in which the resumed run differs from the run that wrote the snapshot."""
    old, at = resume.stored, resume.kimg_text
    assert old is not None
    old_loss, new_loss = old.loss.adversarial.describe(), opts.loss.adversarial.describe()
    if old_loss != new_loss:
        resume.notes.append(f"resuming an {old_loss} run with --loss={new_loss}: the loss changes at {at}")
    checks = [
        ("--data", old.data.path or "the embedded digits", opts.data.path or "the embedded digits", "the dataset"),
        ("--cond", old.data.use_labels, opts.data.use_labels, "conditioning"),
        ("--subset", old.data.max_size, opts.data.max_size, "the training subset"),
        ("--mirror", old.data.xflip, opts.data.xflip, "x-flips"),
        ("--seed", old.random_seed, opts.random_seed, "the data order"),
        ("--gamma", old.loss.r1_gamma, opts.loss.r1_gamma, "the R1 weight"),
        ("--glr", old.G_opt.lr, opts.G_opt.lr, "G's learning rate"),
        ("--dlr", old.D_opt.lr, opts.D_opt.lr, "D's learning rate"),
        ("--batch", old.batch_size, opts.batch_size, "the batch size"),
        ("--aug", old.augment.mode, opts.augment.mode, "the augmentation mode"),
        ("--augpipe", old.augment.pipe, opts.augment.pipe, "the augmentation pipeline"),
        ("--diffaug-policy", old.augment.diffaug_policy, opts.augment.diffaug_policy, "the DiffAugment policy"),
        ("--target", old.augment.target, opts.augment.target, "ADA's target"),
        ("--blur", old.loss.blur_init_sigma, opts.loss.blur_init_sigma, "the D input blur"),
        ("--ema", old.ema_kimg, opts.ema_kimg, "G_ema's half-life"),
        ("--pairing", old.loss.pairing, opts.loss.pairing, "the pairing of the adversarial loss"),
        ("--g-selfnorm", old.loss.g_selfnorm, opts.loss.g_selfnorm, "G's loss normalisation"),
        ("--r2", old.loss.r2_gamma, opts.loss.r2_gamma, "the R2 weight"),
        ("--lecam", old.loss.lecam_weight, opts.loss.lecam_weight, "the LeCam weight"),
    ]
    for flag, before, after, what in checks:
        if before != after:
            resume.notes.append(f"resuming with {flag}={after} (the run used {before}): {what} changes at {at}")
    was, now = old.data.fingerprint, opts.data.fingerprint
    if was and now and was != now and old.data.path == opts.data.path:
        changed = [
            f"{was['images']} -> {now['images']} images" if was["images"] != now["images"] else "",
            "other image names" if was["names"] != now["names"] else "",
            "other pixels in the sampled images" if was["pixels"] != now["pixels"] else "",
        ]
        resume.notes.append(
            f"the data at {opts.data.path} changed since the snapshot ({', '.join(c for c in changed if c)}): "
            f"training continues on the new images at {at}"
        )
    if old.total_kimg != opts.total_kimg:
        resume.notes.append(f"training to {opts.total_kimg:g} kimg (the run was set to {old.total_kimg:g})")


def fit_resumed_networks(
    resume: ResumeSource, G_kwargs: dict[str, Any], D_kwargs: dict[str, Any], given: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(G_kwargs, D_kwargs) built from the resume file; a misfit is refused, a partial load announced."""
    saved = {name: resume.networks[name].init_kwargs for name in ("G", "D") if resume.networks.get(name) is not None}
    if set(saved) != {"G", "D"}:
        raise UserError(f"--resume={resume.path}: the file holds no {' or '.join({'G', 'D'} - set(saved))} network")
    if resume.kind == "snapshot":
        for name, run_kwargs in [("G", G_kwargs), ("D", D_kwargs)]:
            diffs = network_transfer.shape_differences(saved[name], run_kwargs)
            if diffs:
                raise UserError(
                    f"--resume={resume.path}: the snapshot's {name} does not fit this run "
                    f"(snapshot vs run: {network_transfer.describe_differences(diffs)}); resume with "
                    "the run's own --data/--cfg/--cond or start a new run"
                )
        return (
            network_transfer.with_shape_free_from(saved["G"], G_kwargs),
            network_transfer.with_shape_free_from(saved["D"], D_kwargs),
        )

    # An official pickle: its architecture, the new dataset's shape; tensors copied where names and shapes agree.
    flat = {name: network_transfer.flatten_kwargs(saved[name]) for name in saved}
    for flag, key in ARCHITECTURE_FLAGS.items():
        if flag in given:
            values = {v for name in flat for k, v in flat[name].items() if k.rsplit(".", 1)[-1] == key}
            if values and values != {given[flag]}:
                raise UserError(
                    f"--{flag.replace('_', '-')}={given[flag]}, but the networks are built from "
                    f"{resume.path} with {key}={'/'.join(map(str, sorted(values)))}; leave "
                    f"--{flag.replace('_', '-')} out when fine-tuning"
                )
    flagged = frozenset(key for flag, key in FUNCTION_FLAGS.items() if flag in given)
    fitted = {
        "G": network_transfer.fine_tune_kwargs(saved["G"], G_kwargs, flagged),
        "D": network_transfer.fine_tune_kwargs(saved["D"], D_kwargs, flagged),
    }
    for name in ("G", "D"):
        for key, (before, after) in network_transfer.kwarg_changes(saved[name], fitted[name]).items():
            why = KWARG_REASONS.get(key.rsplit(".", 1)[-1], "this run's settings")
            resume.notes.append(f"{name}: {key} {before} -> {after} ({why})")
    for name, cls in [("G", Generator), ("D", Discriminator)]:
        if network_transfer.shape_differences(saved[name], fitted[name]):
            plan = network_transfer.transfer_plan(resume.networks[name], cls(**fitted[name]))
            if plan.mismatched:
                raise UserError(
                    f"--resume={resume.path}: {name} cannot be fine-tuned on this dataset: tensors "
                    f"differ in shape ({network_transfer.preview(plan.mismatched)})"
                )
            why = network_transfer.describe_differences(network_transfer.shape_differences(saved[name], fitted[name]))
            if plan.fresh:
                resume.notes.append(
                    f"{name}: {len(plan.fresh)} tensors start from scratch because the pickle "
                    f"differs from this dataset ({why}): {network_transfer.preview(plan.fresh)}"
                )
            if plan.unused:
                resume.notes.append(
                    f"{name}: {len(plan.unused)} tensors of the pickle are not used ({why}): "
                    f"{network_transfer.preview(plan.unused)}"
                )
    return fitted["G"], fitted["D"]


# ----------------------------------------------------------------------------------------------------
# Flags -> TrainingOptions, one section at a time.


def check_metrics(metrics: list[str], detector_dir: str | None, dataset_kwargs: dict[str, Any]) -> None:
    """Every metric name is valid, means something on this dataset, and its detector weights are on disk."""
    if not metrics:
        return
    for metric in metrics:
        if not metric_main.is_valid_metric(metric):
            raise UserError(
                f"--metrics: unknown metric {metric!r}; valid: {', '.join(metric_main.list_valid_metrics())}"
                ' (or "none")'
            )
        try:
            metric_main.check_metric_dataset(metric, dataset_kwargs)
        except metric_main.MetricDatasetError as err:
            raise UserError(f"--metrics={metric}: {err}") from None
        spec = metric_main.parse_metric(metric)
        kind = metric_main.detector_kind(metric)
        try:
            detectors.locate_detector(kind, detector_dir=detector_dir, need_lpips=spec.family == "ppl")
            if kind in detectors.KINDS:  # built now (and kept for the run): a damaged file is refused before any output
                detectors.get_detector(kind, "cpu", detector_dir, need_lpips=spec.family == "ppl")
        except detectors.DetectorNotFoundError as err:
            raise UserError(
                f"--metrics={metric} needs detector weights that are not on this machine:\n{err}\n"
                "Or train without metrics: --metrics=none"
            ) from None
        except DetectorFormatError as err:
            raise UserError(f"--metrics={metric}: {err}") from None


def _data_section(flags: TrainFlags) -> tuple[DataOptions, Any, str]:
    if flags.subset is not None and flags.subset < 1:
        raise UserError(f"--subset must be at least 1, got {flags.subset}")
    data_opts = DataOptions(
        path=flags.data,
        use_labels=flags.cond,
        max_size=flags.subset,
        xflip=flags.mirror,
        random_seed=flags.seed,
        workers=flags.workers if flags.workers is not None else 0,
    )
    try:
        dataset = open_dataset(**data_opts.dataset_kwargs())
        if len(dataset) > 1000 and dataset.resolution >= 512:
            print(f"Checking that {dataset.name}'s images decode (a sample of 258)...", flush=True)
        dataset.verify_decodable(sample=DECODE_CHECK_SAMPLE)
    except (DatasetError, FileNotFoundError, OSError) as err:
        raise UserError(f"--data={flags.data!r}: {err}") from None
    data_opts.resolution = dataset.resolution
    data_opts.fingerprint = dataset.fingerprint()
    if flags.cond and not dataset.has_labels:
        raise UserError(
            f"--cond=1 requires labels, but {flags.data or 'the embedded dataset'} has none "
            '(dataset.json with "labels")'
        )
    if flags.subset is not None and flags.subset > len(dataset):
        raise UserError(f"--subset={flags.subset} exceeds the {len(dataset)} images of {dataset.name}")
    desc = dataset.name + ("-cond" if flags.cond else "") + ("-mirror" if flags.mirror else "")
    return data_opts, dataset, desc


def _config_section(flags: TrainFlags, resolution: int, cuda: bool) -> tuple[options_lib.ConfigSpec, str, str]:
    """(spec with the flag overrides, cfg name, description suffix)."""
    spec = (
        options_lib.auto_spec(resolution, flags.gpus, cuda) if flags.cfg == "auto" else options_lib.CFG_SPECS[flags.cfg]
    )
    cfg_name = ("tiny" if not cuda else f"auto{flags.gpus}") if flags.cfg == "auto" else flags.cfg
    overrides = dict(
        gamma=flags.gamma,
        kimg=flags.kimg,
        tick=flags.tick,
        lrate=flags.glr,
        cbase=flags.cbase,
        cmax=flags.cmax,
        map=flags.map_depth,
        mbstd=flags.mbstd_group,
        mb=flags.batch,
        ema=flags.ema,
    )
    for flag, value in [
        ("--cbase", flags.cbase),
        ("--cmax", flags.cmax),
        ("--map-depth", flags.map_depth),
        ("--mbstd-group", flags.mbstd_group),
    ]:
        if value is not None and value <= 0:
            raise UserError(f"{flag} must be > 0, got {value}")
    spec = dataclasses.replace(spec, **{field: value for field, value in overrides.items() if value is not None})
    if flags.ema_rampup is not None:
        spec = dataclasses.replace(spec, ramp=flags.ema_rampup or None)  # 0 turns the ramp-up off
    desc = f"-{cfg_name}" + (f"-batch{flags.batch}" if flags.batch is not None else "")
    return spec, cfg_name, desc


MAX_BATCH_GPU = 4096  # images per process and pass; StyleGAN2-ADA's configs use at most 64


def _batch_gpu(flags: TrainFlags, spec: options_lib.ConfigSpec) -> int:
    gpus = flags.gpus
    if flags.batch is not None and (flags.batch < 1 or flags.batch % gpus != 0):
        raise UserError(f"--batch={flags.batch} must be a positive multiple of --gpus={gpus}")
    batch_gpu = flags.batch_gpu
    if batch_gpu is None:
        batch_gpu = spec.mb // spec.ref_gpus if flags.batch is None and gpus <= spec.ref_gpus else spec.mb // gpus
        batch_gpu = max(batch_gpu, 1)
    if batch_gpu > MAX_BATCH_GPU:
        raise UserError(
            f"--batch={spec.mb} puts {batch_gpu} images on each process per pass, more than {MAX_BATCH_GPU}; "
            "give --batch-gpu to accumulate gradients over smaller passes"
        )
    if batch_gpu < 1 or spec.mb % (batch_gpu * gpus) != 0:
        raise UserError(f"--batch={spec.mb} must be a multiple of --batch-gpu={batch_gpu} times --gpus={gpus}")
    if batch_gpu % min(spec.mbstd, batch_gpu) != 0:
        raise UserError(
            f"--batch-gpu={batch_gpu} must be a multiple of the minibatch-stddev group (--mbstd-group={spec.mbstd})"
        )
    return batch_gpu


def _loss_section(flags: TrainFlags, spec: options_lib.ConfigSpec) -> tuple[LossOptions, str]:
    try:
        default_k = LossOptions().adversarial.k  # the GAN default, k = 2 as the paper states for FFHQ
        adversarial = rlo.LossConfig(flags.loss, k=default_k if flags.k is None else flags.k, m=flags.m)
    except (ValueError, TypeError) as err:
        raise UserError(f"--loss={flags.loss} --k={flags.k} --m={flags.m}: {err}") from None
    if not adversarial.is_rooted and (flags.k is not None or flags.m is not None):
        raise UserError("--k and --m set the rooted losses; use them with --loss=rlo or --loss=rlo-eq9")
    loss_opts = LossOptions(
        adversarial=adversarial,
        pairing=flags.pairing,
        g_selfnorm=flags.g_selfnorm,
        r1_gamma=spec.gamma,
        r2_gamma=flags.r2,
        lecam_weight=flags.lecam,
        style_mixing_prob=0.9 if spec.mixing else 0.0,
        pl_weight=2.0 if spec.pl else 0.0,
    )
    if flags.blur > 0:
        loss_opts.blur_init_sigma, loss_opts.blur_fade_kimg = flags.blur, spec.mb * 200 / 32
    desc = f"-{rlo.GanObjective(adversarial, flags.pairing, flags.g_selfnorm).describe()}"
    desc += f"-gamma{flags.gamma:g}" if flags.gamma is not None else ""
    desc += f"-r2_{flags.r2:g}" if flags.r2 else ""
    desc += f"-lecam{flags.lecam:g}" if flags.lecam else ""
    desc += f"-kimg{flags.kimg:g}" if flags.kimg is not None else ""
    return loss_opts, desc


def _augment_section(flags: TrainFlags, spec: options_lib.ConfigSpec) -> tuple[AugmentOptions, str]:
    aug, p, target, augpipe = flags.aug or spec.aug, flags.p, flags.target, flags.augpipe
    if p is not None and aug != "fixed":
        raise UserError("--p can only be given with --aug=fixed")
    if target is not None and aug != "ada":
        raise UserError("--target can only be given with --aug=ada")
    if augpipe is not None and aug in ("noaug", "diffaug"):
        raise UserError(f"--augpipe cannot be given with --aug={aug} (it picks the ADA pipeline)")
    if aug == "fixed" and p is None:
        raise UserError("--aug=fixed needs --p")
    if flags.diffaug_policy is not None and aug != "diffaug":
        raise UserError("--diffaug-policy can only be given with --aug=diffaug")
    aug_opts = AugmentOptions(mode=aug, pipe=augpipe or "bgc", p=p or 0.0, target=0.6 if target is None else target)
    desc = f"-{aug}" + (f"-p{p:g}" if p is not None else "") + (f"-target{target:g}" if target is not None else "")
    desc += f"-{augpipe}" if augpipe is not None else ""
    if aug == "diffaug":
        try:
            policy = parse_policy(flags.diffaug_policy if flags.diffaug_policy is not None else DEFAULT_POLICY)
        except ValueError as err:
            raise UserError(f"--diffaug-policy={flags.diffaug_policy!r}: {err}") from None
        aug_opts.diffaug_policy = ",".join(policy)
        desc += f"-{'+'.join(policy)}" if flags.diffaug_policy is not None else ""
    return aug_opts, desc


def setup_training_options(
    flags: TrainFlags | None = None,
    *,
    cuda: bool | None = None,
    local_gpus: bool = True,
    resume_source: ResumeSource | None = None,
    **values: Any,
) -> tuple[TrainingOptions, str]:
    """Flags -> (TrainingOptions without run_dir, run description); UserError on any invalid value.

    Flags come as a TrainFlags or as its fields by keyword. cuda: whether processes train on CUDA devices
    (default: if available); local_gpus: --gpus processes are spawned on this node (False under torchrun).
    resume_source: the loaded --resume file, whose networks fix the architecture.
    """
    flags = dataclasses.replace(flags or TrainFlags(), **values)
    cuda = torch.cuda.is_available() if cuda is None else cuda
    if flags.gpus < 1 or flags.gpus & (flags.gpus - 1):
        raise UserError(f"--gpus must be a power of two >= 1, got {flags.gpus}")
    if cuda and local_gpus and flags.gpus > torch.cuda.device_count():
        raise UserError(f"--gpus={flags.gpus}, but only {torch.cuda.device_count()} CUDA devices are visible")
    if flags.workers is None:
        flags.workers = 3 if cuda else 0  # in-process loading is cheaper than worker processes on a small CPU
    if flags.resume is not None and resume_source is None:
        resume_source = open_resume(flags.resume)

    data_opts, dataset, desc = _data_section(flags)
    spec, cfg_name, cfg_desc = _config_section(flags, dataset.resolution, cuda)
    batch_gpu = _batch_gpu(flags, spec)
    loss_opts, loss_desc = _loss_section(flags, spec)
    aug_opts, aug_desc = _augment_section(flags, spec)
    desc += cfg_desc + loss_desc + aug_desc
    G_kwargs, D_kwargs = options_lib.network_kwargs(
        spec,
        dataset.resolution,
        dataset.num_channels,
        dataset.label_dim if flags.cond else 0,
        fp32=flags.fp32,
        nhwc=flags.nhwc,
        freezed=flags.freezed,
    )
    desc += (f"-freezed{flags.freezed}" if flags.freezed else "") + ("-fp32" if flags.fp32 and spec.fp16_res else "")
    if flags.cbase is not None and flags.cbase < dataset.resolution:  # a config's cbase is raised, a flag is not
        raise UserError(
            f"--cbase={flags.cbase} gives 0 channels at the data's resolution {dataset.resolution}; "
            f"expected --cbase >= {dataset.resolution}"
        )
    for name, kwargs in (("Generator", G_kwargs), ("Discriminator", D_kwargs)):
        try:  # the same bounds as a network read from a file: sizes that would exhaust memory are refused here
            network_bounds.check_init_kwargs(name, kwargs, where="--cbase/--cmax/--map-depth/--mbstd-group")
        except network_bounds.KwargsError as err:
            raise UserError(str(err)) from None

    metrics = flags.metrics
    if metrics is None:
        metrics, why = metric_main.default_metric(
            digits_metrics.is_embedded_digits(data_opts.dataset_kwargs()), cfg_name == "tiny", flags.detector_dir
        )
        click.echo(f"Metrics: {metrics} by default ({why}); --metrics chooses others")
    metric_list = _parse_comma_list(metrics)
    check_metrics(metric_list, flags.detector_dir, data_opts.dataset_kwargs())

    ema_rampup, ada_kimg = spec.ramp, 500.0
    if resume_source is not None:
        given = {key: value for key, value in dataclasses.asdict(flags).items() if value != getattr(DEFAULTS, key)}
        G_kwargs, D_kwargs = fit_resumed_networks(resume_source, G_kwargs, D_kwargs, given)
        group = D_kwargs.get("epilogue_kwargs", {}).get("mbstd_group_size", 4)  # 4: the constructor's default
        if group is not None and batch_gpu % min(group, batch_gpu) != 0:
            raise UserError(
                f"--batch-gpu={batch_gpu} must be a multiple of the minibatch-stddev group {group} of the D in "
                f"{resume_source.path}; change the batch or pass --mbstd-group"
            )
        if resume_source.kind == "official":  # fine-tuning from weights, as StyleGAN2-ADA does
            ema_rampup = spec.ramp if flags.ema_rampup is not None else None
            ada_kimg = 100.0
        desc += "-resume"
    aug_opts.kimg = ada_kimg

    opts = TrainingOptions(
        cfg=cfg_name,
        data=data_opts,
        G_kwargs=G_kwargs,
        D_kwargs=D_kwargs,
        G_opt=OptimizerOptions(lr=spec.lrate),
        D_opt=OptimizerOptions(lr=flags.dlr or spec.lrate),
        loss=loss_opts,
        augment=aug_opts,
        num_gpus=flags.gpus,
        batch_size=spec.mb,
        batch_gpu=batch_gpu,
        ema_kimg=spec.ema,
        ema_rampup=ema_rampup,
        total_kimg=spec.kimg,
        kimg_per_tick=spec.tick,
        image_snapshot_ticks=flags.snap,
        network_snapshot_ticks=flags.snap,
        metrics=metric_list,
        detector_dir=flags.detector_dir,
        random_seed=flags.seed,
        resume=flags.resume,
        cudnn_benchmark=not flags.nobench,
        allow_tf32=flags.allow_tf32,
        repair_nonfinite_grads=bool(G_kwargs["synthesis_kwargs"].get("num_fp16_res")) and not flags.fp32,
        optimizer_snapshots=flags.optim_state,
        cli_flags={key: value for key, value in dataclasses.asdict(flags).items() if key != "resume"},
    )
    if resume_source is not None and resume_source.stored is not None:
        announce_changes(resume_source, opts)
    return opts, desc


def warn_if_slow_on_cpu(opts: TrainingOptions, cuda: bool) -> None:
    if cuda:
        return
    sec = options_lib.cpu_sec_per_kimg(opts.G_kwargs, opts.D_kwargs)
    if sec < 100:
        return
    total_days = sec * opts.total_kimg / 86400
    print(
        f"Warning: no CUDA device: --cfg={opts.cfg} at {opts.data.resolution}px costs roughly {sec:.0e} s/kimg on "
        f"a small CPU ({opts.total_kimg:g} kimg: ~{total_days:.2g} days); train on a GPU, or use --cfg=tiny here",
        file=sys.stderr,
        flush=True,
    )
