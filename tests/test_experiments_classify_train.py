"""Classifier training: a loss switch changes the objective and nothing else (initial weights, every batch and its
augmentation); a killed run resumes bit-exactly on the CPU from its atomic checkpoint; two gloo processes with half
of each batch step as one process with the whole batch; the schedule is the stated formula."""

import dataclasses
import math
import pathlib

import pytest
import torch
from click.testing import CliRunner

import rlo
from dnnlib.files import FileWriteError
from experiments import classify, classify_data, classify_train
from experiments.classify_dist import Dist, spawn
from experiments.classify_train import RunDirError, TrainSettings, train_run

CPU = torch.device("cpu")


def _source(max_images=120, crop_flip=True, randaugment=None):
    data = classify_data.load_digits_split(max_images=max_images)
    return classify_data.make_source(data, classify_data.AugmentSettings(crop_flip, randaugment), 32, CPU)


def _recording(monkeypatch):
    """Wrap make_classifier so every built net records its initial state and every input batch."""
    log = []
    build = classify_train.make_classifier

    def make(*args, **kwargs):
        net = build(*args, **kwargs)
        entry = {"init": {k: v.clone() for k, v in net.state_dict().items()}, "inputs": []}
        log.append(entry)
        net.register_forward_pre_hook(
            lambda module, inputs: entry["inputs"].append(inputs[0].clone()) if module.training else None
        )
        return net

    monkeypatch.setattr(classify_train, "make_classifier", make)
    return log


@pytest.mark.parametrize(
    "model, kwargs", [("small-cnn", ()), ("vit-tiny", (("embed_dim", 16), ("depth", 1), ("drop_rate", 0.3)))]
)
def test_a_loss_switch_changes_the_loss_and_nothing_else(model, kwargs, monkeypatch):
    log = _recording(monkeypatch)
    source = _source(randaugment=(1, 9))
    settings = TrainSettings(model=model, epochs=2, batch=32, warmup_epochs=0.5, model_kwargs=kwargs)
    nets = [
        train_run(source, rlo.LossConfig.parse(name), settings, seed=4, progress=False)[1]
        for name in ("ce", "rlo-k5", "focal")
    ]
    ce, rooted, focal = log
    assert all(torch.equal(ce["init"][k], other["init"][k]) for other in (rooted, focal) for k in ce["init"])
    assert len(ce["inputs"]) == len(rooted["inputs"]) == 2 * math.ceil(96 / 32)
    for a, b, c in zip(ce["inputs"], rooted["inputs"], focal["inputs"]):
        assert torch.equal(a, b) and torch.equal(a, c)  # same batches, same crops, flips and RandAugment ops
    assert not torch.equal(ce["inputs"][0], ce["inputs"][3])  # epochs differ
    assert not all(torch.equal(a, b) for a, b in zip(nets[0].parameters(), nets[1].parameters()))


def test_another_seed_changes_weights_and_order(monkeypatch):
    log = _recording(monkeypatch)
    source = _source()
    for seed in (0, 1):
        train_run(source, rlo.LossConfig("ce"), TrainSettings(epochs=1, batch=32), seed=seed, progress=False)
    assert not torch.equal(log[0]["init"]["head.weight"], log[1]["init"]["head.weight"])
    assert not torch.equal(log[0]["inputs"][0], log[1]["inputs"][0])


class _Killed(Exception):
    pass


def _kill_after(epoch):
    def hook(done):
        if done == epoch:
            raise _Killed

    return hook


RESUME_SETTINGS = TrainSettings(
    model="vit-tiny",
    epochs=4,
    batch=32,
    optimizer="adamw",
    warmup_epochs=1,
    clip_grad=0.5,
    model_kwargs=(("embed_dim", 16), ("depth", 1), ("drop_rate", 0.3)),
)


def test_a_killed_run_resumes_bit_exactly(tmp_path):
    source = _source()
    cfg = rlo.LossConfig("rlo", k=8)
    straight, net = train_run(source, cfg, RESUME_SETTINGS, seed=2, run_dir=tmp_path / "a", progress=False)
    with pytest.raises(_Killed):
        train_run(
            source, cfg, RESUME_SETTINGS, seed=2, run_dir=tmp_path / "b", progress=False, on_epoch_end=_kill_after(2)
        )
    assert torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=True)["epoch"] == 2
    resumed, net_resumed = train_run(
        source, cfg, RESUME_SETTINGS, seed=2, run_dir=tmp_path / "b", resume=True, progress=False
    )
    for (name, a), b in zip(net.state_dict().items(), net_resumed.state_dict().values()):
        assert torch.equal(a, b), name
    fields = ("train_loss", "train_ce", "train_acc", "test_acc", "test_ce", "test_loss", "lr")
    assert [[getattr(r, f) for f in fields] for r in straight.epochs[1:]] == [
        [getattr(r, f) for f in fields] for r in resumed.epochs[1:]
    ]
    log = (tmp_path / "b" / "log.csv").read_text().splitlines()
    assert log[0].startswith("epoch,train_loss") and len(log) == 1 + 5
    assert list((tmp_path / "b" / "tb").iterdir())  # TensorBoard events
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == ["checkpoint.pt", "log.csv", "tb"]  # no temp files
    again, _ = train_run(source, cfg, RESUME_SETTINGS, seed=2, run_dir=tmp_path / "b", resume=True, progress=False)
    assert [r.test_acc for r in again.epochs] == [r.test_acc for r in resumed.epochs]  # finished: returned as saved


def test_a_run_folder_is_never_overwritten_or_resumed_with_other_settings(tmp_path):
    source = _source(max_images=60)
    settings = TrainSettings(epochs=1, batch=32)
    train_run(source, rlo.LossConfig("ce"), settings, seed=0, run_dir=tmp_path, progress=False)
    with pytest.raises(RunDirError, match="checkpoint.pt exists: pass --resume"):
        train_run(source, rlo.LossConfig("ce"), settings, seed=0, run_dir=tmp_path, progress=False)
    with pytest.raises(RunDirError, match=r"other settings \(lr: 0.001 there, 0.5 now\)"):
        train_run(
            source,
            rlo.LossConfig("ce"),
            dataclasses.replace(settings, lr=0.5),
            seed=0,
            run_dir=tmp_path,
            resume=True,
            progress=False,
        )


@pytest.mark.parametrize("content", [b"random bytes, not a zip", None])
def test_resuming_a_damaged_or_foreign_checkpoint_is_one_line(tmp_path, content):
    path = tmp_path / "checkpoint.pt"
    if content is None:
        torch.save([torch.ones(2)], path)  # a file of tensors, but not this tool's checkpoint
    else:
        path.write_bytes(content)
    with pytest.raises(RunDirError) as err:
        train_run(
            _source(max_images=60),
            rlo.LossConfig("ce"),
            TrainSettings(epochs=1, batch=32),
            seed=0,
            run_dir=tmp_path,
            resume=True,
            progress=False,
        )
    message = str(err.value)
    assert str(path) in message and "\n" not in message and "weights_only" not in message


def test_checkpoints_are_written_atomically(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint.pt"
    classify_train.save_atomic({"a": torch.ones(2)}, path)

    def broken(state, f):
        f.write(b"half")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken)
    with pytest.raises((OSError, FileWriteError)):
        classify_train.save_atomic({"a": torch.zeros(2)}, path)
    assert torch.equal(torch.load(path, weights_only=True)["a"], torch.ones(2))  # the old one, whole
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]


def test_warmup_cosine_is_the_stated_formula():
    f = classify_train.WarmupCosine(total_steps=10, warmup_steps=4, schedule="cosine")
    assert [f(s) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert f(4) == 1.0 and f(7) == pytest.approx(0.5 * (1 + math.cos(math.pi * 3 / 6))) and f(10) == pytest.approx(0)
    assert classify_train.WarmupCosine(10, 0, "constant")(9) == 1.0


@pytest.mark.parametrize(
    "optimizer, cls", [("adamw", torch.optim.AdamW), ("adam", torch.optim.Adam), ("sgd", torch.optim.SGD)]
)
def test_optimizer_choice(optimizer, cls):
    opt = classify_train.make_optimizer(
        TrainSettings(optimizer=optimizer, lr=0.1, weight_decay=0.2), torch.nn.Linear(2, 2)
    )
    assert type(opt) is cls and opt.param_groups[0]["lr"] == 0.1 and opt.param_groups[0]["weight_decay"] == 0.2


def test_bf16_autocast_and_channels_last_run_on_the_cpu():
    history, _ = train_run(
        _source(max_images=60),
        rlo.LossConfig("ce"),
        TrainSettings(epochs=1, batch=32, precision="bf16", channels_last=True),
        seed=0,
        progress=False,
    )
    assert math.isfinite(history.epochs[-1].train_loss)


# ---------------------------------------------------------------- two processes

DIST_SETTINGS = TrainSettings(epochs=2, batch=30, warmup_epochs=0.5, clip_grad=1.0)


def _distributed_worker(dist: Dist, out: str) -> None:
    torch.set_num_threads(1)
    history, net = train_run(
        _source(max_images=101), rlo.LossConfig("rlo", k=5), DIST_SETTINGS, seed=3, dist=dist, progress=False
    )
    if dist.is_main:
        torch.save(
            {
                "state": net.state_dict(),
                "acc": [r.test_acc for r in history.epochs],
                "loss": [r.train_loss for r in history.epochs[1:]],
            },
            out,
        )


def test_two_gloo_processes_with_half_batches_equal_one_process(tmp_path):
    # 81 training images, batch 30: the last batch (21) splits 11/10, so the shards are not equal
    out = tmp_path / "two.pt"
    spawn(2, "gloo", _distributed_worker, str(out))
    two = torch.load(out, weights_only=True)
    history, net = train_run(_source(max_images=101), rlo.LossConfig("rlo", k=5), DIST_SETTINGS, seed=3, progress=False)
    for name, value in net.state_dict().items():
        torch.testing.assert_close(two["state"][name], value, rtol=1e-4, atol=1e-5, msg=name)  # Adam: ~1e-6 here
    assert two["acc"] == [r.test_acc for r in history.epochs]
    assert two["loss"] == pytest.approx([r.train_loss for r in history.epochs[1:]], rel=1e-6)


def test_the_cli_spawns_processes_with_gpus_n(tmp_path):
    args = ["--max-images", "60", "--epochs", "1", "--seeds", "1", "--losses", "ce", "--batch", "16", "--device", "cpu"]
    one = CliRunner().invoke(classify.main, args + ["--out", str(tmp_path / "one")], catch_exceptions=False)
    two = CliRunner().invoke(
        classify.main, args + ["--gpus", "2", "--out", str(tmp_path / "two")], catch_exceptions=False
    )
    assert one.exit_code == 0 and two.exit_code == 0, two.output
    read = lambda folder: [
        line.split(",")[3:9]
        for line in (tmp_path / folder / "classify_digits_epochs.csv").read_text().splitlines()  # noqa: E731 -- epoch .. test_ce, no times
    ]
    rows_one, rows_two = read("one"), read("two")
    assert rows_one[0] == rows_two[0] and len(rows_one) == len(rows_two) == 3
    for a, b in zip(rows_one[1:], rows_two[1:]):
        assert [float(v) for v in a] == pytest.approx([float(v) for v in b], rel=1e-4, nan_ok=True)
    assert "--gpus=2" in (pathlib.Path(tmp_path) / "two" / "classify_digits.md").read_text()


def test_without_a_terminal_each_epoch_prints_a_line(tmp_path, capsys):
    """Under nohup or a batch scheduler tqdm draws nothing; a plain line per epoch shows the run is alive."""
    train_run(_source(max_images=60), rlo.LossConfig("ce"), TrainSettings(epochs=2, batch=32), seed=0, progress=True)
    lines = [line for line in capsys.readouterr().out.splitlines() if ": epoch " in line]
    assert [line.split(": epoch ")[1].split(",")[0] for line in lines] == ["1/2", "2/2"]
    assert all("test accuracy" in line and line.endswith(" s") for line in lines)
