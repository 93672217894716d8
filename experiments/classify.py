"""Image classification with CE, focal and RLO (k = 5, 8, 10): the paper's Tables 2-3 and Figure 3, at any size.

    python -m experiments.classify                                     # digits, small CNN, CPU, ~5 min
    python -m experiments.classify --preset table2-cifar100-vit --cifar100-path cifar-100-python.tar.gz \\
        --run-dir runs/t2-c100-vit                                         # one row of Table 2, on a GPU
    torchrun --nproc-per-node 4 -m experiments.classify --preset ...  # or: --gpus 4

Pieces: :mod:`~experiments.classify_data` (datasets, augmentation, batches), :mod:`~experiments.
classifier_models` (small CNN; ResNet, ViT, Swin from timm; pretrained files), :mod:`~experiments.classify_train`
(one run, checkpoints, resume), :mod:`~experiments.classify_dist` (processes), :mod:`~experiments.
classify_report` (tables, figure), :mod:`~experiments.classify_presets` (the paper's settings, with sources).

Protocol: for each seed every loss starts from the same initial weights and sees the same batches and
augmentations (paired seeds); recorded per epoch: the training objective and CE (running), the running training
accuracy, test accuracy, CE and own loss after the epoch, and the epoch's training wall time (evaluation excluded);
epoch 0 is the shared initial network. Reported: last-epoch test accuracy (no early stopping on the test set), mean
± 95 % Student-t CI over seeds, and the per-seed difference to CE. Digits defaults (ours, sized for a CPU): the
embedded 1,797 digits at 32x32 grey, seeded 80/20 split (1438/359), no augmentation (a flipped digit is another
digit), AdamW lr 1e-3, weight decay 0.01, batch 64, cosine schedule, 30 epochs, 5 seeds.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import time
from collections.abc import Sequence
from typing import Any

import click
import torch
from click.core import ParameterSource

import rlo
from dnnlib.image_data import DataFileError
from experiments import classifier_models
from experiments.classifier_models import MODEL_NAMES, MODELS, MissingExtraError, PretrainedError
from experiments.classify_data import (
    DATA_NAMES,
    DATASETS,
    AugmentSettings,
    load_data,
    make_source,
    resolve_data_path,
)
from experiments.classify_dist import Dist, from_torchrun, init_torchrun, spawn
from experiments.classify_presets import PRESET_NAMES, PRESETS
from experiments.classify_report import epochs_csv, figure3, results_csv, results_table, table2, table3
from experiments.classify_train import (
    OPTIMIZERS,
    PRECISIONS,
    SCHEDULES,
    RunDirError,
    RunHistory,
    TrainSettings,
    run_name,
    train_run,
)
from experiments.outputs import out_option, save_figure_atomic, write_text_atomic

DEFAULT_LOSSES = "ce,focal,rlo-k5,rlo-k8,rlo-k10"
AUGMENTS = ("auto", "none", "crop-flip")


# ---------------------------------------------------------------------------------------------------- flags


def parse_loss(name: str) -> rlo.LossConfig:
    """A loss label -> the family member, by :meth:`rlo.LossConfig.parse` (the labels ``describe`` writes):
    ``ce``, ``focal`` (gamma 3, alpha 0.25, as the paper; ``focal-g2-a0.5`` otherwise), ``unhinged``, ``rlo-k5``
    (eq. 4, m = k), ``rlo-eq9-k3``, ``rlo-k3-m5``. The short spellings ``rlo-5`` and ``rlo-eq9-3`` are aliases
    of ``rlo-k5`` and ``rlo-eq9-k3``. Anything else, or a member without a multi-class form, raises ValueError
    naming the value."""
    try:
        cfg = rlo.LossConfig.parse(name.strip())
    except ValueError as err:
        raise ValueError(f"--losses: {err}") from None
    if cfg.name not in rlo.loss_names("multiclass"):
        raise ValueError(
            f"--losses: {name!r} has no multi-class form; choose from {', '.join(rlo.loss_names('multiclass'))}"
        )
    return cfg


def parse_losses(text: str) -> list[rlo.LossConfig]:
    """Comma-separated loss labels -> configs, in order; duplicates (``rlo-5,rlo-k5`` too) and an empty list are
    errors."""
    names = [part for part in (p.strip() for p in text.split(",")) if part]
    if not names:
        raise ValueError(f"--losses: no loss named in {text!r}")
    configs = [parse_loss(name) for name in names]
    if len(set(configs)) != len(configs):
        raise ValueError(f"--losses: a loss is named twice in {text!r}")
    return configs


def _losses_flag(ctx: click.Context, param: click.Parameter, text: Any) -> list[rlo.LossConfig]:
    if isinstance(text, list):
        return text
    try:
        return parse_losses(text)
    except ValueError as err:  # the message starts with --losses and names the value
        raise click.UsageError(str(err)) from None


def _models_flag(ctx: click.Context, param: click.Parameter, text: Any) -> tuple[str, ...]:
    if isinstance(text, tuple):
        return text
    names = tuple(part.strip() for part in text.split(",") if part.strip())
    bad = [name for name in names if name not in MODELS]
    if bad or not names:
        raise click.BadParameter(
            f"{(bad or [text])[0]!r} is not one of {', '.join(MODEL_NAMES)} (a comma-separated "
            f"list runs each: Table 3)",
            ctx,
            param,
        )
    if len(set(names)) != len(names):
        raise click.BadParameter(f"a model is named twice in {text!r}", ctx, param)
    return names


def _randaugment_flag(ctx: click.Context, param: click.Parameter, text: Any) -> tuple[int, int] | None:
    if text is None or isinstance(text, tuple):
        return text
    try:
        num_ops, magnitude = (int(part) for part in text.split(","))
        if num_ops < 1 or not 0 <= magnitude <= 30:
            raise ValueError
    except ValueError:
        raise click.BadParameter(f"{text!r} is not N,M (ops >= 1, magnitude 0..30), e.g. 2,14", ctx, param) from None
    return num_ops, magnitude


def _default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def _flag_text(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return ",".join(_flag_text(item) for item in value)
    return value.describe() if isinstance(value, rlo.LossConfig) else str(value)


def _command_line(ctx: click.Context) -> str:
    """The run as one command: the flags given (not the defaults, not a preset's values), in ``--help`` order,
    losses by their labels."""
    given = []
    for param in ctx.command.params:
        if param.name in ctx.params and ctx.get_parameter_source(param.name) is not ParameterSource.DEFAULT:
            value = ctx.params[param.name]
            flag = f"--{param.name.replace('_', '-')}"
            if isinstance(value, bool) and param.secondary_opts:
                given.append(flag if value else f"--no-{param.name.replace('_', '-')}")
            elif isinstance(value, bool):
                given.append(flag)
            else:
                given.append(f"{flag}={_flag_text(value)}")
    return " ".join(["python -m experiments.classify"] + given)


# ---------------------------------------------------------------------------------------------------- the sweep


@dataclasses.dataclass(frozen=True)
class Job:
    """Everything a process of the sweep needs (picklable, for --gpus N)."""

    data: str
    data_path: str | None
    max_images: int | None
    losses: tuple[rlo.LossConfig, ...]
    models: tuple[str, ...]
    settings: TrainSettings
    seeds: int
    device: str
    run_dir: pathlib.Path | None
    resume: bool
    out: pathlib.Path
    stem: str
    command: str


def run_sweep(job: Job, dist: Dist = Dist()) -> list[RunHistory] | None:
    """Every (seed, model, loss) run, seed-major so a slow-down of a shared machine spreads over the losses; process 0
    writes the reports and returns the histories."""
    device = torch.device(job.device)
    if device.type == "cuda" and dist.world > 1:
        device = torch.device("cuda", torch.cuda.current_device())
    data = load_data(job.data, job.data_path, job.max_images)
    source = make_source(data, job.settings.augment, job.settings.image_size, device)
    start = time.perf_counter()
    runs = []
    for seed in range(job.seeds):
        for model in job.models:
            settings = dataclasses.replace(job.settings, model=model)
            for cfg in job.losses:
                folder = None if job.run_dir is None else job.run_dir / run_name(job.data, cfg, seed, model)
                runs.append(
                    train_run(
                        source,
                        cfg,
                        settings,
                        seed,
                        device=str(device),
                        dist=dist,
                        run_dir=folder,
                        resume=job.resume,
                        announce=lambda line: click.echo(line, err=True),
                    )[0]
                )
    seconds = time.perf_counter() - start
    if dist.is_main:
        write_reports(job, runs, source, seconds)
        return runs
    return None


def write_reports(job: Job, runs: Sequence[RunHistory], source, seconds: float) -> None:
    s = job.settings
    aug = s.augment
    augment = (
        " + ".join(
            (["RandAugment({}, {})".format(*aug.randaugment)] if aug.randaugment else [])
            + (["crop+flip"] if aug.crop_flip else [])
        )
        or "none"
    )
    schedule = f"{s.schedule} schedule" + (f" after {s.warmup_epochs:g} warm-up epochs" if s.warmup_epochs else "")
    header = (
        f"# Image classification on {job.data}: CE vs focal vs RLO (paper Tables 2-3 protocol)\n\n"
        f"Produced by `{job.command}`. {job.data}: {source.n_train} train / {source.n_test} test images "
        f"[{source.in_channels}, {s.image_size}, {s.image_size}]; models {', '.join(job.models)}; "
        f"{s.optimizer} lr {s.lr:g}, weight decay {s.weight_decay:g}, batch {s.batch}, {s.epochs} epochs, "
        f"{schedule}, augmentation {augment}, precision {s.precision}"
        f"{', fine-tuned from ' + s.pretrained if s.pretrained else ''}; seeds 0..{job.seeds - 1}, each seed "
        f"gives every loss the same initial weights and batch order. Device {job.device}, "
        f"{torch.get_num_threads()} torch threads; whole run {seconds:.1f} s.\n\n"
        f"Test accuracy after the last epoch and the best over epochs (the latter picks the epoch on the test "
        f"set, so it is optimistic), mean ± 95 % Student-t CI over seeds (blank for one seed); − CE: the "
        f"per-seed difference to CE (paired). Time: training only, evaluation excluded.\n\n"
    )
    body = "## Table 2 layout\n\n" + table2(runs, job.data) + "\n\n"
    if len(job.models) > 1:
        body += "## Table 3 layout (train: running accuracy over the last epoch)\n\n" + table3(runs) + "\n\n"
    body += "## Per loss\n\n" + results_table(runs) + "\n"
    title = f"{job.data}, {s.optimizer} lr {s.lr:g}, {job.seeds} seed(s): validation curves against wall time"
    paths = [
        write_text_atomic(job.out / f"{job.stem}.md", header + body),
        write_text_atomic(job.out / f"{job.stem}.csv", results_csv(runs)),
        write_text_atomic(job.out / f"{job.stem}_epochs.csv", epochs_csv(runs)),
        save_figure_atomic(figure3(runs, title), job.out / f"{job.stem}.png"),
    ]
    click.echo(body)
    click.echo(f"whole run {seconds:.1f} s")
    for path in paths:
        click.echo(f"wrote {path}")


def _spawned_sweep(dist: Dist, job: Job) -> None:
    torch.set_num_threads(max(1, torch.get_num_threads() // dist.world))
    run_sweep(job, dist)


# ---------------------------------------------------------------------------------------------------- CLI


def _apply_preset(ctx: click.Context, name: str | None) -> dict:
    """The parameters with the preset's values where the command line gave none."""
    params = dict(ctx.params)
    if name is None:
        return params
    by_name = {param.name: param for param in ctx.command.params}
    for key, raw in PRESETS[name].values:
        if ctx.get_parameter_source(key) in (ParameterSource.DEFAULT, None):
            params[key] = by_name[key].process_value(ctx, raw)
    return params


def _check_timm(models: Sequence[str]) -> None:
    if any(MODELS[m].timm_name for m in models):
        try:
            classifier_models._timm()
        except MissingExtraError as err:
            raise click.ClickException(str(err)) from None


def _validate(params: dict, preset: str | None) -> None:
    """Refusals that need no data: each a one-line usage error naming the flag, before anything is written."""
    if params["max_images"] is not None and params["data"] != "digits":
        raise click.UsageError("--max-images applies to --data=digits only")
    if params["precision"] == "fp16" and not params["device"].startswith("cuda"):
        raise click.UsageError(
            "--precision=fp16 needs --device=cuda (fp16 autocast with a GradScaler is GPU-only; "
            "bf16 runs on the CPU too)"
        )
    if preset and PRESETS[preset].needs_pretrained and not params["pretrained"]:
        model = MODELS[params["model"][0]]
        raise click.UsageError(
            f"--preset={preset} fine-tunes: pass --pretrained=PATH, a local checkpoint of "
            f"{model.timm_name} (timm .safetensors/.pth or torchvision .pth)"
        )
    if params["batch"] < params["gpus"]:
        raise click.UsageError(f"--batch={params['batch']} is smaller than --gpus={params['gpus']}")
    if params["pretrained"] and len(params["model"]) > 1:
        raise click.UsageError("--pretrained fits one --model, not a list")


def _check_pretrained(params: dict, num_classes: int, in_channels: int) -> None:
    """Load the pretrained file once before anything runs, so a file for another model stops here."""
    if not params["pretrained"]:
        return
    model = params["model"][0]
    net = classifier_models.make_classifier(model, in_channels, num_classes, params["image_size"])
    try:
        classifier_models.load_pretrained(net, params["pretrained"], model)
    except PretrainedError as err:
        raise click.UsageError(str(err)) from None


@click.command(
    help="Image classification with CE, focal and RLO (k = 5, 8, 10), the paper's Table 2/3 protocol; "
    "writes STEM.md (Table 2 and 3 layouts), STEM.csv, STEM_epochs.csv and STEM.png (Figure 3), STEM "
    "= classify_DATA[_MODELS] or classify_PRESET."
)
@click.option(
    "--preset",
    type=click.Choice(PRESET_NAMES),
    default=None,
    help="the paper's settings for a row of Table 2 or 3 (flags given override its values)",
)
@click.option(
    "--data",
    type=click.Choice(DATA_NAMES),
    default="digits",
    show_default=True,
    help="dataset (digits: embedded, offline)",
)
@click.option(
    "--cifar-path",
    default=None,
    metavar="PATH",
    help="cifar-10-python.tar.gz or its extracted folder [default: $RLO_CIFAR10]",
)
@click.option(
    "--cifar100-path",
    default=None,
    metavar="PATH",
    help="cifar-100-python.tar.gz or its extracted folder [default: $RLO_CIFAR100]",
)
@click.option(
    "--tinyimagenet-path", default=None, metavar="DIR", help="the tiny-imagenet-200 folder [default: $RLO_TINYIMAGENET]"
)
@click.option("--food101-path", default=None, metavar="DIR", help="the food-101 folder [default: $RLO_FOOD101]")
@click.option(
    "--losses",
    default=DEFAULT_LOSSES,
    show_default=True,
    callback=_losses_flag,
    metavar="LIST",
    help=f"comma-separated loss labels of {', '.join(rlo.loss_names('multiclass'))} (rlo-k5, focal-g2, ...)",
)
@click.option(
    "--model",
    default="small-cnn",
    show_default=True,
    callback=_models_flag,
    metavar="LIST",
    help=f"network, or a comma-separated list: {', '.join(MODEL_NAMES)}",
)
@click.option(
    "--image-size",
    type=click.IntRange(min=8),
    default=None,
    help="input side in pixels [default: 32 for digits/CIFAR, 64 Tiny-ImageNet, 224 Food-101]",
)
@click.option(
    "--pretrained",
    default=None,
    metavar="PATH",
    help="fine-tune from a local timm/torchvision checkpoint (.pth/.bin/.safetensors); head re-initialised",
)
@click.option("--epochs", type=click.IntRange(min=0), default=30, show_default=True, help="epochs per run")
@click.option(
    "--batch",
    type=click.IntRange(min=1),
    default=64,
    show_default=True,
    help="global minibatch size (split over processes)",
)
@click.option("--optimizer", type=click.Choice(OPTIMIZERS), default="adamw", show_default=True, help="optimiser")
@click.option(
    "--lr", type=click.FloatRange(min=0, min_open=True), default=1e-3, show_default=True, help="peak learning rate"
)
@click.option(
    "--weight-decay",
    type=click.FloatRange(min=0),
    default=0.01,
    show_default=True,
    help="weight decay (decoupled for adamw)",
)
@click.option("--momentum", type=click.FloatRange(min=0, max=1), default=0.9, show_default=True, help="SGD momentum")
@click.option(
    "--schedule",
    type=click.Choice(SCHEDULES),
    default="cosine",
    show_default=True,
    help="learning-rate schedule per step after warm-up",
)
@click.option(
    "--warmup-epochs", type=click.FloatRange(min=0), default=0.0, show_default=True, help="linear warm-up length"
)
@click.option(
    "--clip-grad",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="clip the gradient's global L2 norm to this [default: off]",
)
@click.option(
    "--augment",
    type=click.Choice(AUGMENTS),
    default="auto",
    show_default=True,
    help="training augmentation (auto: crop+flip for all but digits)",
)
@click.option(
    "--randaugment",
    default=None,
    callback=_randaugment_flag,
    metavar="N,M",
    help="add RandAugment with N ops of magnitude M (e.g. 2,14) [default: off]",
)
@click.option(
    "--precision",
    type=click.Choice(PRECISIONS),
    default="fp32",
    show_default=True,
    help="autocast dtype (fp16 adds a GradScaler; GPU only)",
)
@click.option(
    "--channels-last/--no-channels-last",
    default=False,
    show_default=True,
    help="NHWC memory format (faster convolutions on GPUs)",
)
@click.option(
    "--seeds", type=click.IntRange(min=1), default=5, show_default=True, help="init/batch-order seeds 0..S-1 per loss"
)
@click.option(
    "--max-images",
    type=click.IntRange(min=2),
    default=None,
    help="digits only: use this many images (quick runs) [default: all]",
)
@click.option(
    "--workers",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="DataLoader worker processes for the image folders",
)
@click.option(
    "--run-dir",
    type=click.Path(file_okay=False, path_type=pathlib.Path),
    default=None,
    metavar="DIR",
    help="per-run checkpoints (every epoch), log.csv and TensorBoard events [default: none kept]",
)
@click.option("--resume", is_flag=True, default=False, help="continue every run from its checkpoint in --run-dir")
@click.option(
    "--gpus",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="processes to spawn, one per GPU (gloo CPU processes with --device=cpu); or start with torchrun",
)
@out_option
@click.option("--device", default=_default_device, show_default="cuda when available, else cpu", help="torch device")
@click.pass_context
def main(ctx: click.Context, preset: str | None, **_: Any) -> None:
    params = _apply_preset(ctx, preset)
    _validate(params, preset)
    if params["resume"] and params["run_dir"] is None:
        raise click.UsageError("--resume needs --run-dir (where the checkpoints are)")
    _check_timm(params["model"])
    data = params["data"]
    spec = DATASETS[data]
    data_path = params.get(spec.flag[2:].replace("-", "_")) if spec.flag else None
    try:
        if data != "digits":
            resolve_data_path(data, data_path)  # a missing file is named before anything heavy happens
        loaded = load_data(data, data_path, params["max_images"])
    except (ValueError, FileNotFoundError) as err:  # DataFileError is a ValueError; messages name file and flag
        raise click.UsageError(str(err)) from None
    image_size = params["image_size"] or {"tinyimagenet": 64, "food101": 224}.get(data, 32)
    params["image_size"] = image_size
    _check_pretrained(params, loaded.num_classes, loaded.in_channels)
    augment = AugmentSettings(
        crop_flip={"auto": data != "digits", "none": False, "crop-flip": True}[params["augment"]],
        randaugment=params["randaugment"],
    )
    settings = TrainSettings(
        params["model"][0],
        params["epochs"],
        params["batch"],
        params["optimizer"],
        params["lr"],
        params["weight_decay"],
        params["momentum"],
        params["schedule"],
        params["warmup_epochs"],
        params["clip_grad"],
        augment,
        params["precision"],
        params["channels_last"],
        image_size,
        params["pretrained"],
        params["workers"],
    )
    models = params["model"]
    stem = (
        f"classify_{preset}"
        if preset
        else f"classify_{data}" + ("" if models == ("small-cnn",) else "_" + "_".join(models))
    )
    job = Job(
        data,
        data_path,
        params["max_images"],
        tuple(params["losses"]),
        models,
        settings,
        params["seeds"],
        params["device"],
        params["run_dir"],
        params["resume"],
        params["out"],
        stem,
        _command_line(ctx),
    )
    try:
        if from_torchrun():
            dist = init_torchrun("nccl" if job.device.startswith("cuda") else "gloo")
            if job.device.startswith("cuda"):
                torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
            run_sweep(job, dist)
        elif params["gpus"] > 1:
            spawn(params["gpus"], "nccl" if job.device.startswith("cuda") else "gloo", _spawned_sweep, job)
        else:
            run_sweep(job)
    except (RunDirError, DataFileError, PretrainedError) as err:
        raise click.ClickException(str(err)) from None
    # A FileWriteError goes on to out_option, which removes this run's other outputs and says so in one line.


if __name__ == "__main__":
    main()
