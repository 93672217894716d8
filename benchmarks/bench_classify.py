"""Training-step time of the classifier models per loss: forward, loss, backward and an AdamW step on a random batch
(what `python -m experiments.classify` reports as time per epoch, without the data). The loss is a small part of
the step, so every loss should take the model's time within noise.

    python benchmarks/bench_classify.py [--models small-cnn,resnet-tiny,vit-tiny] [--losses ce,focal,rlo-k10]
                                        [--batch 64] [--size 32] [--channels 1] [--classes 10] [--reps 20]
                                        [--device cpu] [--precision fp32|bf16|fp16] [--channels-last]

On a GPU, the paper's models at their batch: --models resnet50,vit-b,swin-b --channels 3 --classes 100 --batch 512
--device cuda --precision bf16.
"""

import contextlib
import os
import statistics
import sys
import time

import click
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # rlo from this checkout

import rlo  # noqa: E402
from experiments.classifier_models import MODEL_NAMES, make_classifier, parameter_count  # noqa: E402


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@click.command(help=__doc__.splitlines()[0])
@click.option(
    "--models",
    default="small-cnn,resnet-tiny,vit-tiny",
    show_default=True,
    help=f"comma-separated, of {', '.join(MODEL_NAMES)}",
)
@click.option("--losses", default="ce,focal,rlo-k10", show_default=True, help="comma-separated loss labels")
@click.option("--batch", type=click.IntRange(min=1), default=64, show_default=True)
@click.option("--size", type=click.IntRange(min=8), default=32, show_default=True, help="image side")
@click.option("--channels", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--classes", type=click.IntRange(min=2), default=10, show_default=True)
@click.option("--reps", type=click.IntRange(min=1), default=20, show_default=True)
@click.option("--device", default="cpu", show_default=True)
@click.option("--precision", type=click.Choice(["fp32", "bf16", "fp16"]), default="fp32", show_default=True)
@click.option("--channels-last", is_flag=True)
def main(models, losses, batch, size, channels, classes, reps, device, precision, channels_last):
    device = torch.device(device)
    configs = [rlo.LossConfig.parse(label) for label in losses.split(",")]
    memory = torch.channels_last if channels_last else torch.contiguous_format
    x = torch.randn(batch, channels, size, size, device=device).contiguous(memory_format=memory)
    y = torch.randint(0, classes, (batch,), device=device)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    print(
        f"train step (fwd + loss + bwd + AdamW), batch {batch}x{channels}x{size}x{size}, {classes} classes, "
        f"{precision}{', channels_last' if channels_last else ''} on {device}, torch {torch.__version__}, "
        f"threads {torch.get_num_threads()}, {reps} reps after 3 warm-up"
    )
    for name in models.split(","):
        torch.manual_seed(0)
        net = make_classifier(name, channels, classes, size).to(device, memory_format=memory)
        optimizer = torch.optim.AdamW(net.parameters(), lr=1e-4)
        scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
        times = {cfg.describe(): [] for cfg in configs}
        for rep in range(reps + 3):  # round-robin over the losses, so background load hits each alike
            for cfg in configs:
                _sync(device)
                start = time.perf_counter()
                with torch.autocast(device.type, dtype=dtype) if dtype else contextlib.nullcontext():
                    logits = net(x)
                loss = rlo.classification_loss(cfg, logits.float(), y)
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
                _sync(device)
                if rep >= 3:
                    times[cfg.describe()].append((time.perf_counter() - start) * 1e3)
        print(f"{name} ({parameter_count(net) / 1e6:.2f}M parameters)")
        for label, samples in times.items():
            print(
                f"  {label:10s} median {statistics.median(samples):9.2f} ms  (min {min(samples):9.2f}, "
                f"max {max(samples):9.2f})"
            )


if __name__ == "__main__":
    main()
