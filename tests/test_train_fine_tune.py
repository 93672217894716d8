"""train.py --resume=<official pickle>: the networks compute what the pickle's compute (minibatch-stddev group,
activation clamp) unless a flag says otherwise, and every kwarg built differently from the pickle is announced."""

import json

import numpy as np
import PIL.Image
import pytest
import torch
from click.testing import CliRunner
from official_pickle_writer import official_network, official_pickle_bytes
from test_train_resume import printed_options

from commands import train_command
from training import network_transfer
from training.checkpoint import load_network
from training.networks import Discriminator, Generator

TINY = ["--cbase=64", "--cmax=16", "--metrics=none", "--tick=0.008", "--snap=1", "--aug=noaug"]


def official_kwargs(c_dim: int, group: int, clamp: int | None) -> tuple[dict, dict]:
    """(G, D) init kwargs as the official train.py writes them into a snapshot for a float16 GPU run: a skip G, a
    resnet D, conv_clamp on both, D's minibatch-stddev group in epilogue_kwargs (class_name is not kept)."""
    common = dict(c_dim=c_dim, img_resolution=16, img_channels=3)
    G = dict(
        z_dim=16,
        w_dim=16,
        mapping_kwargs=dict(num_layers=2),
        synthesis_kwargs=dict(channel_base=64, channel_max=16, num_fp16_res=4, conv_clamp=clamp),
        **common,
    )
    D = dict(
        block_kwargs={},
        mapping_kwargs={},
        epilogue_kwargs=dict(mbstd_group_size=group),
        architecture="resnet",
        channel_base=64,
        channel_max=16,
        num_fp16_res=4,
        conv_clamp=clamp,
        **common,
    )
    return G, D


def write_official_pickle(path, c_dim: int = 0, group: int = 8, clamp: int | None = 256):
    torch.manual_seed(0)
    G_kwargs, D_kwargs = official_kwargs(c_dim, group, clamp)
    G, D, G_ema = Generator(**G_kwargs), Discriminator(**D_kwargs), Generator(**G_kwargs)
    for net in (G, D, G_ema):
        net.init_kwargs = dict(G_kwargs if isinstance(net, Generator) else D_kwargs)
    snap = dict(
        training_set_kwargs=dict(resolution=16, use_labels=bool(c_dim)),
        G=official_network(G),
        D=official_network(D),
        G_ema=official_network(G_ema),
        augment_pipe=None,
    )
    path.write_bytes(official_pickle_bytes(snap))
    return path


def image_folder(folder, labels: int = 0, count: int = 16):
    folder.mkdir(parents=True)
    rng = np.random.RandomState(1)
    for i in range(count):
        PIL.Image.fromarray(rng.randint(0, 256, [16, 16, 3], dtype=np.uint8)).save(folder / f"{i}.png")
    if labels:
        (folder / "dataset.json").write_text(json.dumps({"labels": [[f"{i}.png", i % labels] for i in range(count)]}))
    return folder


@pytest.fixture(scope="module")
def train():
    return train_command


@pytest.fixture(scope="module")
def fine_tune(train, tmp_path_factory):
    """fine_tune(pickle_args, *flags, dry_run=True) -> (exit code, output) of train.py on a 16 px folder."""
    root = tmp_path_factory.mktemp("fine_tune")
    folders = {0: image_folder(root / "plain"), 2: image_folder(root / "labelled", labels=2)}
    count = iter(range(1000))

    def run(pickle_args: dict, *flags: str, dry_run: bool = True):
        n = next(count)
        pkl = write_official_pickle(root / f"official{n}.pkl", **pickle_args)
        c_dim = pickle_args.get("c_dim", 0)
        args = [f"--outdir={root / f'runs{n}'}", f"--data={folders[c_dim]}", f"--resume={pkl}", *TINY, *flags]
        args += ["--cond=1"] if c_dim else []
        args += ["--dry-run"] if dry_run else []
        result = CliRunner().invoke(train.main, args, catch_exceptions=False)
        return result.exit_code, result.output, root / f"runs{n}"

    return run


def test_group_and_clamp_of_the_pickle_are_kept_and_the_precision_change_announced(fine_tune):
    code, output, _ = fine_tune(dict(group=8, clamp=256), "--batch=8")
    assert code == 0, output
    opts = printed_options(output)
    assert opts["D_kwargs"]["epilogue_kwargs"]["mbstd_group_size"] == 8
    assert opts["D_kwargs"]["conv_clamp"] == 256
    assert opts["G_kwargs"]["synthesis_kwargs"]["conv_clamp"] == 256
    notes = [line for line in output.splitlines() if line.startswith("Note: ")]
    why = "(precision follows this run and device: --cfg, --fp32)"
    assert f"Note: G: synthesis_kwargs.num_fp16_res 4 -> 0 {why}" in notes
    assert f"Note: D: num_fp16_res 4 -> 0 {why}" in notes
    assert not any("mbstd_group_size" in line or "conv_clamp" in line for line in notes), notes
    assert len(notes) == 2, notes  # same dataset shape: nothing else differs


def test_a_given_mbstd_group_replaces_the_pickles_and_is_announced(fine_tune):
    code, output, _ = fine_tune(dict(group=8, clamp=256), "--batch=8", "--mbstd-group=4")
    assert code == 0, output
    assert printed_options(output)["D_kwargs"]["epilogue_kwargs"]["mbstd_group_size"] == 4
    assert "Note: D: epilogue_kwargs.mbstd_group_size 8 -> 4 (--mbstd-group)" in output.splitlines()


def test_conditional_pickle_keeps_its_clamp_in_g_and_d(fine_tune):
    code, output, _ = fine_tune(dict(c_dim=2, group=4, clamp=256), "--batch=8")
    assert code == 0, output
    opts = printed_options(output)
    assert opts["G_kwargs"]["c_dim"] == opts["D_kwargs"]["c_dim"] == 2
    assert opts["G_kwargs"]["synthesis_kwargs"]["conv_clamp"] == opts["D_kwargs"]["conv_clamp"] == 256


def test_a_batch_that_the_pickles_group_does_not_divide_is_refused_before_a_run_directory(fine_tune):
    code, output, runs = fine_tune(dict(group=8, clamp=256), "--batch=12")
    assert code != 0
    assert "--batch-gpu=12 must be a multiple of the minibatch-stddev group 8 of the D in" in output
    assert "Traceback" not in output and not runs.exists()


def test_fine_tuning_trains_with_the_pickles_group_and_clamp(fine_tune):
    """A real tick: the snapshot's D and G were built, and trained, with group 8 and clamp 256."""
    code, output, runs = fine_tune(dict(group=8, clamp=256), "--batch=8", "--kimg=0.008", dry_run=False)
    assert code == 0, output
    (run,) = runs.iterdir()
    snap = load_network(str(run / "network-snapshot-000000-008.pt"))
    assert snap["D"].init_kwargs["epilogue_kwargs"]["mbstd_group_size"] == 8
    assert snap["D"].init_kwargs["conv_clamp"] == 256
    assert snap["G"].init_kwargs["synthesis_kwargs"]["conv_clamp"] == 256
    assert snap["D"].b4.mbstd.group_size == 8


def test_function_kwargs_come_from_the_file_unless_flagged_and_run_kwargs_from_the_run():
    saved = dict(img_resolution=32, conv_clamp=256, num_fp16_res=4, epilogue_kwargs=dict(mbstd_group_size=8))
    run = dict(img_resolution=16, conv_clamp=None, num_fp16_res=0, epilogue_kwargs=dict(mbstd_group_size=4))
    kept = network_transfer.fine_tune_kwargs(saved, run)
    assert kept == dict(img_resolution=16, conv_clamp=256, num_fp16_res=0, epilogue_kwargs=dict(mbstd_group_size=8))
    flagged = network_transfer.fine_tune_kwargs(saved, run, frozenset({"mbstd_group_size"}))
    assert flagged["epilogue_kwargs"] == dict(mbstd_group_size=4) and flagged["conv_clamp"] == 256
    assert network_transfer.kwarg_changes(saved, kept) == {"img_resolution": (32, 16), "num_fp16_res": (4, 0)}
    assert network_transfer.kwarg_changes(dict(a=1), dict(b=None)) == {"a": (1, "unset"), "b": ("unset", None)}
