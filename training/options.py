"""Typed training configuration: per-`--cfg` hyper-parameters and the full option set, serialised to JSON.

`TrainingOptions` is everything `training_loop` needs, written to `training_options.json` in the run directory
and read back by `TrainingOptions.from_json`. Network constructor kwargs stay plain JSON dicts (they are the
`init_kwargs` a snapshot stores); everything else is a dataclass field with a type.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import rlo

# ----------------------------------------------------------------------------------------------------
# Per-config hyper-parameters (StyleGAN2-ADA's cfg_specs, plus a tiny CPU config).


@dataclasses.dataclass(frozen=True)
class ConfigSpec:
    """Hyper-parameters one `--cfg` fixes. `ref_gpus` is the GPU count the batch was tuned for.

    mb: total batch; mbstd: minibatch-stddev group; cbase/cmax: channel_base/channel_max of G and D;
    lrate: Adam learning rate of G and D; gamma: R1 weight; ema: G_ema half-life (kimg); ramp: EMA ramp-up
    (fraction of images seen; None = off); map: mapping depth; zdim: z and w width; fp16_res: number of
    top resolutions in mixed precision; pl/mixing: whether path-length reg and style mixing are on;
    arch_D: D architecture; tick: kimg per tick; aug: the default --aug.
    """

    ref_gpus: int
    kimg: float
    mb: int
    mbstd: int
    cbase: int
    cmax: int
    lrate: float
    gamma: float
    ema: float
    ramp: float | None
    map: int
    zdim: int = 512
    fp16_res: int = 4
    pl: bool = True
    mixing: bool = True
    arch_D: str = "resnet"
    tick: float = 4
    aug: str = "ada"


CFG_SPECS: dict[str, ConfigSpec] = {
    # fmaps=1 <-> cbase=32768 (official `fmaps * 32768`). Values from StyleGAN2-ADA's train.py.
    "stylegan2": ConfigSpec(
        ref_gpus=8, kimg=25000, mb=32, mbstd=4, cbase=32768, cmax=512, lrate=0.002, gamma=10, ema=10, ramp=None, map=8
    ),
    "paper256": ConfigSpec(
        ref_gpus=8, kimg=25000, mb=64, mbstd=8, cbase=16384, cmax=512, lrate=0.0025, gamma=1, ema=20, ramp=None, map=8
    ),
    "paper512": ConfigSpec(
        ref_gpus=8, kimg=25000, mb=64, mbstd=8, cbase=32768, cmax=512, lrate=0.0025, gamma=0.5, ema=20, ramp=None, map=8
    ),
    "paper1024": ConfigSpec(
        ref_gpus=8, kimg=25000, mb=32, mbstd=4, cbase=65536, cmax=512, lrate=0.002, gamma=2, ema=10, ramp=None, map=8
    ),
    "cifar": ConfigSpec(
        ref_gpus=2,
        kimg=100000,
        mb=64,
        mbstd=32,
        cbase=32768,
        cmax=512,
        lrate=0.0025,
        gamma=0.01,
        ema=500,
        ramp=0.05,
        map=2,
        pl=False,
        mixing=False,
        arch_D="orig",
    ),
    # Ours: recognisable digits in about 2.5 minutes on a 2-core CPU (32x32, 16 channels at 32x32 and 32 below, 64-d
    # latents, fp32). Small batches and a high lr give many updates per minute; like 'cifar', no path-length
    # regularisation or style mixing. Chosen by benchmarks/tiny_screen.py (benchmarks/results/tiny_screen.json):
    # round 1 the width and lr, round 2 nothing beyond the seed spread, round 3 (README's --cond=1 run) half the
    # channels at 32x32, which learn faster per minute than the full width, and R1 gamma 0.3 (ahead on 3 seeds of 3).
    "tiny": ConfigSpec(
        ref_gpus=1,
        kimg=24,
        mb=16,
        mbstd=4,
        cbase=512,
        cmax=32,
        lrate=0.01,
        gamma=0.3,
        ema=1,
        ramp=0.05,
        map=2,
        zdim=64,
        fp16_res=0,
        pl=False,
        mixing=False,
        tick=1,
        # A tiny run ends before ADA's p can move (it rises by at most batch x 4 / 500k per adjustment, so p < 0.05
        # after 40 kimg), while its pipeline costs time at p = 0: off by default, --aug=ada turns it on.
        aug="noaug",
    ),
}
CFG_NAMES = ("auto", *CFG_SPECS)


def auto_spec(resolution: int, gpus: int, cuda: bool) -> ConfigSpec:
    """`--cfg=auto`: the tiny config without CUDA, else StyleGAN2-ADA's resolution/GPU-count heuristic."""
    if not cuda:
        return CFG_SPECS["tiny"]
    mb = max(min(gpus * min(4096 // resolution, 32), 64), gpus)
    return ConfigSpec(
        ref_gpus=gpus,
        kimg=25000,
        mb=mb,
        mbstd=min(mb // gpus, 4),
        cbase=32768 if resolution >= 512 else 16384,
        cmax=512,
        lrate=0.002 if resolution >= 1024 else 0.0025,
        gamma=0.0002 * resolution**2 / mb,
        ema=mb * 10 / 32,
        ramp=0.05,
        map=2,
    )


def network_kwargs(
    spec: ConfigSpec,
    resolution: int,
    channels: int,
    c_dim: int,
    fp32: bool = False,
    nhwc: bool = False,
    freezed: int = 0,
    map_depth: int | None = None,
    mbstd_group: int | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(G_kwargs, D_kwargs): JSON constructor kwargs of training.networks.Generator / Discriminator."""
    num_fp16_res = 0 if fp32 else spec.fp16_res
    conv_clamp = None if num_fp16_res == 0 else 256  # clamping only guards float16 against overflow
    # Channels at resolution r are min(cbase / r, cmax): at least one at the output, so a small cbase (the tiny
    # config's 512) still builds on large images. The official configs' cbase (>= 16384) is never raised.
    cbase = max(spec.cbase, resolution)
    synthesis_kwargs: dict[str, Any] = dict(
        channel_base=cbase, channel_max=spec.cmax, num_fp16_res=num_fp16_res, conv_clamp=conv_clamp
    )
    block_kwargs: dict[str, Any] = {}
    if nhwc:
        synthesis_kwargs["fp16_channels_last"] = True
        block_kwargs["fp16_channels_last"] = True
    if freezed:
        block_kwargs["freeze_layers"] = freezed
    G_kwargs = dict(
        z_dim=spec.zdim,
        c_dim=c_dim,
        w_dim=spec.zdim,
        img_resolution=resolution,
        img_channels=channels,
        mapping_kwargs=dict(num_layers=map_depth if map_depth is not None else spec.map),
        synthesis_kwargs=synthesis_kwargs,
    )
    D_kwargs = dict(
        c_dim=c_dim,
        img_resolution=resolution,
        img_channels=channels,
        architecture=spec.arch_D,
        channel_base=cbase,
        channel_max=spec.cmax,
        num_fp16_res=num_fp16_res,
        conv_clamp=conv_clamp,
        block_kwargs=block_kwargs,
        mapping_kwargs={},
        epilogue_kwargs=dict(mbstd_group_size=mbstd_group if mbstd_group is not None else spec.mbstd),
    )
    return G_kwargs, D_kwargs


# ----------------------------------------------------------------------------------------------------
# The option set of one training run.


@dataclasses.dataclass
class DataOptions:
    """Training set: `path` None means the embedded digits; the rest are ImageFolderDataset kwargs."""

    path: str | None = None
    resolution: int | None = None
    use_labels: bool = False
    max_size: int | None = None
    xflip: bool = False
    random_seed: int = 0
    workers: int = 3
    fingerprint: dict[str, Any] | None = None  # training.dataset's fingerprint(): a resume compares it

    def dataset_kwargs(self) -> dict[str, Any]:
        """Kwargs of training.dataset.open_dataset (also stored in snapshots as `training_set_kwargs`)."""
        return dict(
            path=self.path,
            resolution=self.resolution,
            use_labels=self.use_labels,
            max_size=self.max_size,
            xflip=self.xflip,
            random_seed=self.random_seed,
        )


@dataclasses.dataclass
class OptimizerOptions:
    """Adam for G or D. Lazy regularisation rescales lr and betas by interval/(interval+1) at build time."""

    lr: float = 0.0025
    betas: tuple[float, float] = (0.0, 0.99)
    eps: float = 1e-8


@dataclasses.dataclass
class LossOptions:
    """training.loss.StyleGAN2Loss settings; `adversarial` picks the D/G loss from the rlo family."""

    adversarial: rlo.LossConfig = rlo.LossConfig(name="ce", k=2.0)
    pairing: str = "standard"  # rlo.PAIRINGS: D sees real and fake separately, or their paired margin
    g_selfnorm: bool = False  # G's losses over their batch-mean weight relative to CE (rlo.GanObjective)
    r1_gamma: float = 10.0
    r2_gamma: float = 0.0  # R2: the same penalty on generated images, lazily with R1
    lecam_weight: float = 0.0  # LeCam regularisation weight (0: off)
    lecam_decay: float = 0.99  # decay of LeCam's anchors (the authors' value)
    style_mixing_prob: float = 0.9
    pl_weight: float = 2.0
    pl_batch_shrink: int = 2
    pl_decay: float = 0.01
    blur_init_sigma: float = 0.0
    blur_fade_kimg: float = 0.0


@dataclasses.dataclass
class AugmentOptions:
    """mode 'noaug' | 'ada' (p adapted towards `target`) | 'fixed' (p constant) | 'diffaug' (DiffAugment with
    `diffaug_policy`); `pipe` names AUGPIPE_SPECS (ADA and fixed)."""

    mode: str = "ada"
    pipe: str = "bgc"
    diffaug_policy: str = "color,translation,cutout"
    p: float = 0.0
    target: float = 0.6
    interval: int = 4
    kimg: float = 500


@dataclasses.dataclass
class TrainingOptions:
    """Everything one training run needs; `training_options.json` in the run directory."""

    run_dir: str = ""
    cfg: str = "tiny"
    data: DataOptions = dataclasses.field(default_factory=DataOptions)
    G_kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)
    D_kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)
    G_opt: OptimizerOptions = dataclasses.field(default_factory=OptimizerOptions)
    D_opt: OptimizerOptions = dataclasses.field(default_factory=OptimizerOptions)
    loss: LossOptions = dataclasses.field(default_factory=LossOptions)
    augment: AugmentOptions = dataclasses.field(default_factory=AugmentOptions)
    G_reg_interval: int | None = 4  # None: regularise in the same pass as the main loss
    D_reg_interval: int | None = 16
    num_gpus: int = 1  # processes taking part (world size)
    batch_size: int = 32  # total over all processes
    batch_gpu: int = 32  # per process and pass; batch_size / (batch_gpu * num_gpus) passes accumulate
    ema_kimg: float = 10.0
    ema_rampup: float | None = None
    total_kimg: float = 25000
    kimg_per_tick: float = 4
    image_snapshot_ticks: int | None = 50
    network_snapshot_ticks: int | None = 50
    metrics: list[str] = dataclasses.field(default_factory=list)
    detector_dir: str | None = None  # metric detector files (else $RLO_DETECTOR_DIR, cache)
    random_seed: int = 0
    resume: str | None = None
    cudnn_benchmark: bool = True
    allow_tf32: bool = False
    # Mixed precision: float16 layers can overflow a few gradient entries. As StyleGAN2-ADA does, set those to
    # 0 / +-1e5 and carry on (counted in Progress/nonfinite_grad_steps). A non-finite loss still stops the run.
    repair_nonfinite_grads: bool = False
    optimizer_snapshots: str = "latest"  # which snapshots keep the Adam state: 'latest' (older ones shrink) or 'all'
    cli_flags: dict[str, Any] = dataclasses.field(default_factory=dict)  # train.py's flags; --resume replays them

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainingOptions:
        nested = dict(
            data=DataOptions, G_opt=OptimizerOptions, D_opt=OptimizerOptions, loss=LossOptions, augment=AugmentOptions
        )
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"training options: unknown keys {unknown}")
        kwargs = dict(values)
        for name, sub in nested.items():
            if name in kwargs:
                kwargs[name] = sub(**kwargs[name])
        if "loss" in kwargs and isinstance(kwargs["loss"].adversarial, dict):
            kwargs["loss"].adversarial = rlo.LossConfig(**kwargs["loss"].adversarial)
        if "betas" in values.get("G_opt", {}):
            kwargs["G_opt"].betas = tuple(kwargs["G_opt"].betas)
        if "betas" in values.get("D_opt", {}):
            kwargs["D_opt"].betas = tuple(kwargs["D_opt"].betas)
        return cls(**kwargs)

    @classmethod
    def from_json(cls, text: str) -> TrainingOptions:
        return cls.from_dict(json.loads(text))

    @property
    def num_rounds(self) -> int:
        """Gradient-accumulation passes per step and process."""
        return self.batch_size // (self.batch_gpu * self.num_gpus)


# ----------------------------------------------------------------------------------------------------
# What a configuration costs where there is no GPU.

# Effective multiply-accumulates per second of one training step on the project's 2-core CPU, from
# benchmarks/bench_networks.py at --cfg=cifar (G fwd+bwd 1.37 s, D 1.13 s at batch 16, fp32): about 330 s/kimg.
CPU_MACS_PER_SEC = 1.9e11


def _conv_macs_per_image(channel_base: int, channel_max: int, resolution: int) -> tuple[float, float]:
    """(G, D) forward multiply-accumulates of the 3x3 convolutions per image; mapping and 1x1 layers are small."""
    channels = lambda res: min(channel_base // res, channel_max)  # noqa: E731
    g = d = 0.0
    res = 4
    while res <= resolution:
        c, c_low = channels(res), channels(max(res // 2, 4))
        g += res * res * 9 * c * ((c_low if res > 4 else 0) + c)
        d += res * res * 9 * c * c + ((res // 2) ** 2 * 9 * c * c_low if res > 4 else 0)
        res *= 2
    return g, d


def cpu_sec_per_kimg(G_kwargs: dict[str, Any], D_kwargs: dict[str, Any]) -> float:
    """Order-of-magnitude training cost on a small CPU: each image runs G ~4x and D ~9x (forward + backward)."""
    synthesis = G_kwargs.get("synthesis_kwargs", {})
    g, _ = _conv_macs_per_image(
        synthesis.get("channel_base", 32768), synthesis.get("channel_max", 512), G_kwargs["img_resolution"]
    )
    _, d = _conv_macs_per_image(
        D_kwargs.get("channel_base", 32768), D_kwargs.get("channel_max", 512), D_kwargs["img_resolution"]
    )
    return 1000 * (4 * g + 9 * d) / CPU_MACS_PER_SEC
