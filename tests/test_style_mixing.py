"""style_mixing.py: the official options and outputs; its unmixed images are generate.py's images of the same seed."""

import errno
import tempfile

import numpy as np
import PIL.Image
import pytest
import torch
from click.testing import CliRunner
from conftest import perturbed

from commands import generate_command, style_mixing_command
from training import checkpoint
from training.networks import Generator

ROWS, COLS = [85, 100, 75], [55, 821, 1789]


@pytest.fixture(scope="module")
def scripts():
    return style_mixing_command, generate_command


@pytest.fixture(scope="module")
def network(tmp_path_factory):
    """A tiny 32x32 RGB generator (8 ws) with non-default weights, saved as one of our snapshots."""
    G = Generator(
        z_dim=8,
        c_dim=0,
        w_dim=8,
        img_resolution=32,
        img_channels=3,
        mapping_kwargs=dict(num_layers=2),
        synthesis_kwargs=dict(channel_base=64, channel_max=8),
    )
    G = perturbed(G, seed=3)
    G.mapping.w_avg.normal_()  # truncation then has somewhere to pull towards
    path = tmp_path_factory.mktemp("mixing") / "net.pt"
    checkpoint.save_snapshot(path, dict(G_ema=G))
    return path


def read_png(path):
    with PIL.Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def mix(script, network, outdir, *extra):
    args = [f"--network={network}", "--rows=85,100,75", "--cols=55,821,1789", f"--outdir={outdir}", *extra]
    return CliRunner().invoke(script.main, args, catch_exceptions=False)


def generated(generate, network, outdir, seeds, *extra):
    result = CliRunner().invoke(
        generate.main,
        [f"--network={network}", f"--seeds={seeds}", f"--outdir={outdir}", *extra],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    return outdir


def test_writes_the_official_files_and_grid_layout(scripts, network, tmp_path):
    style_mixing, _ = scripts
    result = mix(style_mixing, network, tmp_path / "out", "--styles=0-6")
    assert result.exit_code == 0, result.output
    names = {p.name for p in (tmp_path / "out").iterdir()}
    want = {f"{r}-{c}.png" for r in ROWS for c in COLS} | {f"{s}-{s}.png" for s in ROWS + COLS} | {"grid.png"}
    assert names == want
    grid = read_png(tmp_path / "out" / "grid.png")
    assert grid.shape == (4 * 32, 4 * 32, 3)
    assert not grid[:32, :32].any()  # the top-left cell is black
    for j, col in enumerate(COLS, 1):
        np.testing.assert_array_equal(grid[:32, 32 * j : 32 * (j + 1)], read_png(tmp_path / "out" / f"{col}-{col}.png"))
    for i, row in enumerate(ROWS, 1):
        np.testing.assert_array_equal(grid[32 * i : 32 * (i + 1), :32], read_png(tmp_path / "out" / f"{row}-{row}.png"))
        for j, col in enumerate(COLS, 1):
            np.testing.assert_array_equal(
                grid[32 * i : 32 * (i + 1), 32 * j : 32 * (j + 1)], read_png(tmp_path / "out" / f"{row}-{col}.png")
            )


@pytest.mark.parametrize("extra", [[], ["--trunc=0.7"], ["--noise-mode=random"]])
def test_each_seed_alone_is_generate_py_image_of_that_seed(scripts, network, tmp_path, extra):
    style_mixing, generate = scripts
    assert mix(style_mixing, network, tmp_path / "mix", *extra).exit_code == 0
    ref = generated(generate, network, tmp_path / "gen", ",".join(map(str, ROWS + COLS)), *extra)
    for seed in ROWS + COLS:
        np.testing.assert_array_equal(
            read_png(tmp_path / "mix" / f"{seed}-{seed}.png"), read_png(ref / f"seed{seed:04d}.png")
        )


def test_a_crossover_taking_every_layer_from_the_column_is_the_column_seed_image(scripts, network, tmp_path):
    style_mixing, generate = scripts
    assert mix(style_mixing, network, tmp_path / "mix", "--styles=0-7", "--trunc=0.5").exit_code == 0
    ref = generated(generate, network, tmp_path / "gen", ",".join(map(str, COLS)), "--trunc=0.5")
    for row in ROWS:
        for col in COLS:
            np.testing.assert_array_equal(
                read_png(tmp_path / "mix" / f"{row}-{col}.png"), read_png(ref / f"seed{col:04d}.png")
            )


def test_a_cell_whose_column_is_its_own_row_seed_is_generate_py_image(scripts, network, tmp_path):
    style_mixing, generate = scripts
    result = CliRunner().invoke(
        style_mixing.main,
        [f"--network={network}", "--rows=85,100", "--cols=100,7", "--styles=2-5", f"--outdir={tmp_path / 'mix'}"],
    )
    assert result.exit_code == 0, result.output
    ref = generated(generate, network, tmp_path / "gen", "100")
    np.testing.assert_array_equal(read_png(tmp_path / "mix" / "100-100.png"), read_png(ref / "seed0100.png"))
    assert not np.array_equal(read_png(tmp_path / "mix" / "85-100.png"), read_png(tmp_path / "mix" / "85-85.png"))


def test_crossovers_mix_the_ws_layer_by_layer(scripts, network):
    """The crossover is the row's w with the chosen layers replaced by the column's, through the synthesis net."""
    style_mixing, _ = scripts
    G = checkpoint.load_network(network)["G_ema"]
    images = style_mixing.style_mix(G, [85], [55], [0, 1, 2], truncation_psi=0.8)
    with torch.no_grad():
        w = {
            s: G.mapping(torch.from_numpy(np.random.RandomState(s).randn(1, 8)), None, truncation_psi=0.8)
            for s in (85, 55)
        }
        mixed = torch.cat([w[55][:, :3], w[85][:, 3:]], dim=1)
        want = (G.synthesis(mixed, noise_mode="const").permute(0, 2, 3, 1) * 127.5 + 128).clamp(0, 255)
    np.testing.assert_array_equal(images[(85, 55)], want.to(torch.uint8).numpy()[0])


def test_output_is_deterministic(scripts, network, tmp_path):
    style_mixing, _ = scripts
    for name in ("a", "b"):
        assert mix(style_mixing, network, tmp_path / name, "--noise-mode=random").exit_code == 0
    np.testing.assert_array_equal(read_png(tmp_path / "a" / "grid.png"), read_png(tmp_path / "b" / "grid.png"))


def test_greyscale_network_writes_greyscale_images(scripts, tmp_path):
    style_mixing, _ = scripts
    G = Generator(
        z_dim=8,
        c_dim=0,
        w_dim=8,
        img_resolution=16,
        img_channels=1,
        mapping_kwargs=dict(num_layers=1),
        synthesis_kwargs=dict(channel_base=32, channel_max=4),
    )
    path = tmp_path / "grey.pt"
    checkpoint.save_snapshot(path, dict(G_ema=perturbed(G, seed=1)))
    result = CliRunner().invoke(
        style_mixing.main,
        [f"--network={path}", "--rows=1,2", "--cols=3", "--styles=0-3", f"--outdir={tmp_path / 'out'}"],
    )
    assert result.exit_code == 0, result.output
    with PIL.Image.open(tmp_path / "out" / "grid.png") as image:
        assert image.mode == "L" and image.size == (2 * 16, 3 * 16)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--styles=0-8"], "layer 8 is outside 0..7"),
        (["--styles=a-b"], "'a-b' is not a non-negative integer"),
        (["--rows=5-1"], "runs backwards"),
    ],
)
def test_bad_seed_or_layer_lists_are_named(scripts, network, tmp_path, args, message):
    style_mixing, _ = scripts
    result = CliRunner().invoke(
        style_mixing.main, [f"--network={network}", "--rows=1", "--cols=2", f"--outdir={tmp_path / 'out'}", *args]
    )
    assert result.exit_code == 2 and message in result.output
    assert not (tmp_path / "out").exists()


def test_a_read_only_folder_is_one_line_and_makes_nothing(scripts, network, tmp_path, monkeypatch):
    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(tempfile, "mkdtemp", read_only)
    result = CliRunner().invoke(
        scripts[0].main, ["--network", str(network), "--rows=1", "--cols=2", "--outdir", str(tmp_path / "out")]
    )
    assert result.exit_code == 1, result.output
    assert result.output.strip().endswith("read-only file system; nothing was written")
    assert not (tmp_path / "out").exists()


def test_an_absurd_truncation_is_refused_not_written_black(scripts, network, tmp_path):
    result = mix(scripts[0], network, tmp_path / "out", "--trunc=1e38")
    assert result.exit_code == 2 and "non-finite images" in result.output
    assert not (tmp_path / "out").exists()
