"""Each adversarial switch of train.py (loss member, pairing, R2, LeCam, DiffAugment) trains 2 ticks on the CPU."""

import json

import pytest
from click.testing import CliRunner
from test_train_resume import TINY, image_folder

from commands import train_command
from training import checkpoint


@pytest.fixture(scope="module")
def train():
    return train_command


@pytest.fixture(scope="module")
def faces(tmp_path_factory):
    return image_folder(tmp_path_factory.mktemp("switches") / "faces16", 16)


@pytest.mark.parametrize(
    "args, name, stats",
    [
        (["--loss=hinge"], "faces16-tiny-batch8-hinge-kimg0.016-noaug", ["Loss/D/loss"]),
        (
            ["--loss=rlo", "--k=2", "--pairing=relativistic"],
            "faces16-tiny-batch8-rlo-k2-rel-kimg0.016-noaug",
            ["Loss/D/nll", "Loss/G/nll"],
        ),
        (["--loss=rlo", "--k=2", "--g-selfnorm=1"], "faces16-tiny-batch8-rlo-k2-gsn-kimg0.016-noaug", ["Loss/G/nll"]),
        (["--r2=1", "--gamma=1"], "faces16-tiny-batch8-ce-gamma1-r2_1-kimg0.016-noaug", ["Loss/r2_penalty"]),
        (["--lecam=0.001"], "faces16-tiny-batch8-ce-lecam0.001-kimg0.016-noaug", ["Loss/lecam_penalty"]),
        (["--aug=diffaug"], "faces16-tiny-batch8-ce-kimg0.016-diffaug", []),
        (
            ["--aug=diffaug", "--diffaug-policy=translation,cutout"],
            "faces16-tiny-batch8-ce-kimg0.016-diffaug-translation+cutout",
            [],
        ),
    ],
    ids=["hinge", "rooted-relativistic", "g-selfnorm", "r2", "lecam", "diffaug", "diffaug-policy"],
)
def test_each_switch_trains_two_ticks_and_names_the_run(train, faces, tmp_path, args, name, stats):
    outdir = tmp_path / "runs"
    result = CliRunner().invoke(
        train.main, [f"--outdir={outdir}", f"--data={faces}", "--kimg=0.016", *TINY, *args], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    (run,) = outdir.iterdir()
    assert run.name == f"00000-{name}"
    lines = [json.loads(line) for line in (run / "stats.jsonl").read_text().splitlines()]
    assert [line["Progress/tick"]["mean"] for line in lines] == [0, 1]
    seen = set().union(*lines)
    assert all(key in seen for key in stats), sorted(seen)
    snapshot = checkpoint.load_network(run / "network-snapshot-000000-016.pt")
    options = json.loads(snapshot["resume_state"]["training_options_json"])
    assert options["cli_flags"]["data"] == str(faces)
    if "--aug=diffaug" in args:
        assert snapshot["augment_pipe"] is None  # DiffAugment has no state; the options rebuild it


@pytest.mark.parametrize(
    "args, message",
    [
        (["--aug=diffaug", "--p=0.2"], "--p can only be given with --aug=fixed"),
        (["--aug=diffaug", "--augpipe=bgc"], "--augpipe cannot be given with --aug=diffaug"),
        (["--diffaug-policy=color"], "--diffaug-policy can only be given with --aug=diffaug"),
        (["--aug=diffaug", "--diffaug-policy=color,zoom"], "unknown name 'zoom'"),
        (["--pairing=paired"], "Invalid value for '--pairing'"),
        (["--r2=-1"], "Invalid value for '--r2'"),
        (["--lecam=nan"], "Invalid value for '--lecam'"),
        (["--loss=hinge", "--k=3"], "--k and --m set the rooted losses"),
        (["--map-depth=100000"], "mapping_kwargs.num_layers=100000 is out of bounds"),
        (["--cbase=1000000000", "--cmax=100000"], "channel_base=1000000000 is out of bounds"),
        (["--cbase=16"], "--cbase=16 gives 0 channels at the data's resolution 32; expected --cbase >= 32"),
        (["--batch=10000000"], "more than 4096; give --batch-gpu"),
    ],
)
def test_bad_switches_are_refused_before_anything_is_written(train, tmp_path, args, message):
    outdir = tmp_path / "runs"
    result = CliRunner().invoke(train.main, [f"--outdir={outdir}", *args], catch_exceptions=False)
    assert result.exit_code == 2
    assert message in result.output
    assert not outdir.exists()
