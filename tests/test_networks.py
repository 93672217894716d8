"""StyleGAN2 networks: official weight compatibility (fixture from NVlabs code), layer semantics against
direct formulas, and the behaviours users rely on (truncation, noise modes, style mixing, fp16 rules)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import shared_path, tiny_d, tiny_g

from training import network_layers, networks
from training.network_layers import compute_dtype, compute_memory_format, default_fused_modconv, modulated_conv2d
from training.networks import NETWORK_CLASSES, Discriminator, Generator, MinibatchStdLayer

REF_DIR = ("data", "sg2ada_ref")
TOL = 1e-4

TINY_G = tiny_g(16, latent=16, base=256, cmax=16)
TINY_D = tiny_d(16, base=256, cmax=16)


# ----------------------------------------------------------------------------------------------------
# Helpers.


def parse_param_names(path) -> dict[str, dict]:
    """param_names*.txt -> {'G': {'init_kwargs': ..., 'entries': [(name, shape, kind)]}, 'D': ...}."""
    sections: dict[str, dict] = {}
    current = None
    for line in path.read_text().splitlines():
        if line.startswith("## ") and ":" in line and not line.startswith("## init_kwargs"):
            head = line[3:].split(":")[0].strip()
            key = "G" if head.startswith("G") else "D"
            current = sections.setdefault(key, dict(init_kwargs=None, entries=[]))
        elif line.startswith("## init_kwargs:") and current is not None:
            current["init_kwargs"] = json.loads(line.split(":", 1)[1])
        elif line and not line.startswith("#") and current is not None:
            name, shape, _dtype, kind = line.split("\t")
            current["entries"].append((name, json.loads(shape), kind))
    return sections


def state_entries(module: torch.nn.Module) -> list[tuple[str, list[int], str]]:
    params = {name for name, _ in module.named_parameters()}
    return [(name, list(t.shape), "param" if name in params else "buffer") for name, t in module.state_dict().items()]


def num_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def load_reference():
    ref = torch.load(shared_path(*REF_DIR, "tiny-G_state_dict.pt"), weights_only=True)
    nets = {}
    for key, kwargs_key, cls in [
        ("G", "G_kwargs", Generator),
        ("G_ema", "G_kwargs", Generator),
        ("D", "D_kwargs", Discriminator),
    ]:
        net = cls(**ref[kwargs_key]).eval()
        net.load_state_dict(ref[key], strict=True)
        nets[key] = net
    return nets


def ref_array(name: str) -> np.ndarray:
    return np.load(shared_path(*REF_DIR, f"{name}.npy"))


def max_abs_diff(a: torch.Tensor, b: np.ndarray) -> float:
    return float((a.detach().double() - torch.from_numpy(b).double()).abs().max())


# ----------------------------------------------------------------------------------------------------
# Official compatibility (fixture made with NVlabs/stylegan2-ada-pytorch).


@pytest.mark.parametrize("fname", ["param_names.txt", "param_names_cifar32.txt"])
def test_state_dict_names_and_shapes_equal_official(fname):
    sections = parse_param_names(shared_path(*REF_DIR, fname))
    for key, cls in [("G", Generator), ("D", Discriminator)]:
        net = cls(**sections[key]["init_kwargs"])
        assert state_entries(net) == sections[key]["entries"], f"{fname} {key}"


@pytest.mark.parametrize(
    "G_kwargs, D_kwargs, G_params, D_params",
    [
        # Reference fixture config (manifest.json).
        (
            dict(
                z_dim=64,
                c_dim=0,
                w_dim=64,
                img_resolution=32,
                img_channels=3,
                mapping_kwargs=dict(num_layers=2),
                synthesis_kwargs=dict(channel_base=4096, channel_max=128),
            ),
            dict(
                c_dim=0,
                img_resolution=32,
                img_channels=3,
                architecture="orig",
                channel_base=4096,
                channel_max=128,
                epilogue_kwargs=dict(mbstd_group_size=32),
            ),
            1_136_531,
            1_297_153,
        ),
        # train.py --cfg=cifar at 32x32 (D 'orig'; fp16 and clamp do not change the counts).
        (
            dict(
                z_dim=512,
                c_dim=0,
                w_dim=512,
                img_resolution=32,
                img_channels=3,
                mapping_kwargs=dict(num_layers=2),
                synthesis_kwargs=dict(channel_base=32768, channel_max=512, num_fp16_res=4, conv_clamp=256),
            ),
            dict(
                c_dim=0,
                img_resolution=32,
                img_channels=3,
                architecture="orig",
                channel_base=32768,
                channel_max=512,
                num_fp16_res=4,
                conv_clamp=256,
                epilogue_kwargs=dict(mbstd_group_size=32),
            ),
            19_947_539,
            20_720_641,
        ),
        # 64x64, channel_base 16384, 2 mapping layers, mbstd group 4.
        (
            dict(
                z_dim=512,
                c_dim=0,
                w_dim=512,
                img_resolution=64,
                img_channels=3,
                mapping_kwargs=dict(num_layers=2),
                synthesis_kwargs=dict(channel_base=16384, channel_max=512),
            ),
            dict(
                c_dim=0,
                img_resolution=64,
                img_channels=3,
                channel_base=16384,
                channel_max=512,
                epilogue_kwargs=dict(mbstd_group_size=4),
            ),
            22_243_608,
            23_407_361,
        ),
    ],
)
def test_parameter_counts_equal_official(G_kwargs, D_kwargs, G_params, D_params):
    assert num_params(Generator(**G_kwargs)) == G_params
    assert num_params(Discriminator(**D_kwargs)) == D_params


def test_official_weights_reproduce_mapping_output():
    nets = load_reference()
    z = torch.from_numpy(ref_array("z"))
    with torch.no_grad():
        ws = nets["G_ema"].mapping(z, torch.zeros([len(z), 0]), truncation_psi=1)
    assert max_abs_diff(ws, ref_array("ws_G_ema")) <= TOL


@pytest.mark.parametrize(
    "net_key, psi, ref_name", [("G_ema", 1.0, "img_G_ema"), ("G_ema", 0.7, "img_G_ema_psi0.7"), ("G", 1.0, "img_G")]
)
def test_official_weights_reproduce_images(net_key, psi, ref_name):
    G = load_reference()[net_key]
    z = torch.from_numpy(ref_array("z"))
    c = torch.zeros([len(z), 0])
    for fused in (True, False):  # both modconv paths must reproduce the official images
        with torch.no_grad():
            img = G(z, c, truncation_psi=psi, noise_mode="const", fused_modconv=fused)
        assert img.dtype == torch.float32
        assert max_abs_diff(img, ref_array(ref_name)) <= TOL, f"fused_modconv={fused}"


def test_official_weights_reproduce_saved_uint8_images():
    G = load_reference()["G_ema"]
    z = torch.from_numpy(ref_array("z"))
    with torch.no_grad():
        img = G(z, torch.zeros([len(z), 0]), noise_mode="const")
    img_uint8 = (img.permute(0, 2, 3, 1) * 127.5 + 128).clamp(0, 255).to(torch.uint8).numpy()
    ref = ref_array("img_G_ema_uint8")
    diff = np.abs(img_uint8.astype(np.int32) - ref.astype(np.int32))
    assert diff.max() <= 1  # a value within ~1e-5 of an integer boundary may truncate the other way
    assert (diff == 0).mean() >= 0.999


def test_official_weights_reproduce_discriminator_logits():
    D = load_reference()["D"]
    img = torch.from_numpy(ref_array("img_G_ema"))
    c = torch.zeros([len(img), 0])
    with torch.no_grad():
        logits = D(img, c)
        single = torch.cat([D(img[i : i + 1], c[i : i + 1]) for i in range(len(img))])
    assert logits.shape == (4, 1)
    assert max_abs_diff(logits, ref_array("d_logits")) <= TOL
    assert max_abs_diff(single, ref_array("d_logits_single")) <= TOL


# ----------------------------------------------------------------------------------------------------
# Layer semantics against direct formulas.


def naive_modulated_conv(x, weight, styles, demodulate, up=1):
    """Per-sample loop: conv with W[o,i] * s[i] (* 1/||W[o,:]*s||), using plain torch ops."""
    out = []
    for n in range(x.shape[0]):
        w = weight * styles[n].reshape(1, -1, 1, 1)
        if demodulate:
            w = w / (w.square().sum(dim=[1, 2, 3], keepdim=True) + 1e-8).sqrt()
        out.append(F.conv2d(x[n : n + 1], w, padding=weight.shape[-1] // 2))
    return torch.cat(out)


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("demodulate", [True, False])
def test_modulated_conv2d_equals_per_sample_convolution(fused, demodulate):
    x = torch.randn(3, 5, 8, 8, dtype=torch.float64)
    weight = torch.randn(4, 5, 3, 3, dtype=torch.float64)
    styles = torch.randn(3, 5, dtype=torch.float64)
    got = modulated_conv2d(x, weight, styles, padding=1, demodulate=demodulate, fused_modconv=fused)
    torch.testing.assert_close(got, naive_modulated_conv(x, weight, styles, demodulate), rtol=1e-10, atol=1e-10)


def test_modulated_conv2d_upsampling_paths_agree_in_value_and_gradient():
    f = torch.tensor([1.0, 3.0, 3.0, 1.0])
    f = torch.outer(f, f) / f.sum() ** 2
    results = []
    for fused in (True, False):
        x = torch.randn(2, 4, 5, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(1)).requires_grad_()
        weight = torch.randn(
            6, 4, 3, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(2)
        ).requires_grad_()
        styles = torch.randn(2, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(3)).requires_grad_()
        y = modulated_conv2d(
            x, weight, styles, up=2, padding=1, resample_filter=f, flip_weight=False, fused_modconv=fused
        )
        assert y.shape == (2, 6, 10, 10)
        (y * torch.arange(y.numel(), dtype=torch.float64).reshape(y.shape).sin()).sum().backward()
        results.append((y.detach(), x.grad, weight.grad, styles.grad))
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)


def test_minibatch_std_layer_equals_per_group_stddev():
    x = torch.randn(8, 6, 3, 3, dtype=torch.float64)
    layer = MinibatchStdLayer(group_size=4, num_channels=2)
    y = layer(x)
    assert y.shape == (8, 8, 3, 3)
    torch.testing.assert_close(y[:, :6], x)
    n = 8 // 4  # official grouping: sample g * n + j belongs to group j
    for j in range(n):
        members = x[j::n]  # [4, 6, 3, 3]
        for f_idx in range(2):
            chunk = members[:, 3 * f_idx : 3 * f_idx + 3]
            expect = (chunk.var(dim=0, unbiased=False) + 1e-8).sqrt().mean()
            assert torch.allclose(y[j::n, 6 + f_idx], expect.expand(4, 3, 3))


def test_minibatch_std_layer_rejects_batch_not_multiple_of_group():
    with pytest.raises(ValueError, match="group size 4"):
        MinibatchStdLayer(group_size=4)(torch.randn(6, 2, 2, 2))


def test_mapping_update_emas_moves_w_avg_by_beta_only_when_asked():
    G = Generator(**TINY_G)
    z = torch.randn(5, 16)
    G.mapping(z, None)
    assert torch.equal(G.mapping.w_avg, torch.zeros(16))
    G.mapping.w_avg.normal_()
    before = G.mapping.w_avg.clone()
    ws = G.mapping(z, None, update_emas=True)
    beta = G.mapping.w_avg_beta
    torch.testing.assert_close(G.mapping.w_avg, ws[:, 0].mean(0) * (1 - beta) + before * beta)


@pytest.mark.parametrize("cutoff", [None, 0, 3])
def test_truncation_applies_psi_up_to_cutoff(cutoff):
    G = Generator(**TINY_G)
    G.mapping.w_avg.normal_()
    z = torch.randn(3, 16)
    w = G.mapping(z, None)
    wt = G.mapping(z, None, truncation_psi=0.7, truncation_cutoff=cutoff)
    assert wt.shape == (3, G.num_ws, 16)
    k = G.num_ws if cutoff is None else cutoff
    torch.testing.assert_close(wt[:, :k], G.mapping.w_avg + 0.7 * (w[:, :k] - G.mapping.w_avg))
    torch.testing.assert_close(wt[:, k:], w[:, k:])
    w0 = G.mapping(z, None, truncation_psi=0)
    torch.testing.assert_close(w0, G.mapping.w_avg.expand_as(w0))


def test_class_embedding_normalised_and_concatenated():
    G = Generator(**{**TINY_G, "c_dim": 4}).eval()
    assert G.mapping.fc0.weight.shape == (16, 32)  # z_dim + embed_features (= w_dim)
    z = torch.randn(2, 16)
    c = torch.eye(4)[:2]
    with torch.no_grad():
        y = G(z, c, noise_mode="const")
        y_swapped = G(z, c.flip(0), noise_mode="const")
    assert y.shape == (2, 3, 16, 16)
    assert not torch.allclose(y, y_swapped)
    with pytest.raises(ValueError, match="c_dim=4"):
        G(z, None)


# ----------------------------------------------------------------------------------------------------
# Generator behaviours.


def test_noise_modes():
    G = Generator(**TINY_G).eval()
    for p in G.parameters():
        if p.ndim == 0:  # noise_strength starts at 0; make noise visible
            p.data.fill_(0.5)
    z = torch.randn(2, 16)
    with torch.no_grad():
        const_a = G(z, None, noise_mode="const")
        torch.manual_seed(123)
        const_b = G(z, None, noise_mode="const")
        none = G(z, None, noise_mode="none")
        torch.manual_seed(1)
        rand_1 = G(z, None, noise_mode="random")
        torch.manual_seed(1)
        rand_1b = G(z, None, noise_mode="random")
        rand_2 = G(z, None, noise_mode="random")
        for p in G.parameters():
            if p.ndim == 0:
                p.data.zero_()
        const_no_strength = G(z, None, noise_mode="const")
    assert torch.equal(const_a, const_b)
    assert torch.equal(rand_1, rand_1b)
    assert not torch.allclose(rand_1, rand_2)
    assert not torch.allclose(const_a, none)
    torch.testing.assert_close(none, const_no_strength)
    with pytest.raises(ValueError, match="noise_mode"):
        G(z, None, noise_mode="fixed")


def test_construction_is_deterministic_given_seed():
    torch.manual_seed(7)
    a = Generator(**TINY_G)
    torch.manual_seed(7)
    b = Generator(**TINY_G)
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert ka == kb and torch.equal(va, vb)


def test_style_mixing_through_synthesis_ws():
    G = Generator(**TINY_G).eval()
    z = torch.randn(2, 16)
    with torch.no_grad():
        w1 = G.mapping(z[:1], None)
        w2 = G.mapping(z[1:], None)
        img1 = G.synthesis(w1, noise_mode="const")
        img2 = G.synthesis(w2, noise_mode="const")
        mixed = torch.cat([w1[:, :3], w2[:, 3:]], dim=1)
        assert mixed.shape == (1, G.num_ws, G.w_dim)
        img_mixed = G.synthesis(mixed, noise_mode="const")
        torch.testing.assert_close(G(z[:1], None, noise_mode="const"), img1)
    assert not torch.allclose(img_mixed, img1) and not torch.allclose(img_mixed, img2)
    with pytest.raises(AssertionError):
        G.synthesis(w1[:, :-1])  # wrong number of ws is caught at the block boundary


@pytest.mark.parametrize("architecture", ["orig", "skip", "resnet"])
def test_generator_architectures_fused_and_unfused_modconv_agree(architecture):
    G = Generator(**{**TINY_G, "synthesis_kwargs": {**TINY_G["synthesis_kwargs"], "architecture": architecture}})
    z = torch.randn(3, 16)
    with torch.no_grad():
        img_fused = G(z, None, noise_mode="const", fused_modconv=True)  # per-sample weights, grouped conv
    img = G(z, None, noise_mode="const", fused_modconv=False)  # shared conv, scaled activations
    assert img.shape == (3, 3, 16, 16)
    torch.testing.assert_close(img.detach(), img_fused, rtol=1e-5, atol=1e-5)
    img.square().mean().backward()
    assert [n for n, p in G.named_parameters() if p.grad is None] == []


def test_every_generator_parameter_gets_a_gradient():
    G = Generator(**TINY_G).train()
    G(torch.randn(2, 16), None).mean().backward()
    assert [n for n, p in G.named_parameters() if p.grad is None] == []


# ----------------------------------------------------------------------------------------------------
# fp16 rules.


def test_compute_dtype_uses_fp16_only_on_cuda():
    assert compute_dtype(True, False, torch.device("cuda", 0)) == torch.float16
    assert compute_dtype(True, False, "cuda") == torch.float16
    assert compute_dtype(True, True, "cuda") == torch.float32  # force_fp32
    assert compute_dtype(False, False, "cuda") == torch.float32
    assert compute_dtype(True, False, "cpu") == torch.float32  # CPU runs fp16 blocks in fp32


def test_memory_format_official_on_cuda_size_based_on_cpu():
    big, small = network_layers.CPU_CHANNELS_LAST_MIN_PIXELS, network_layers.CPU_CHANNELS_LAST_MIN_PIXELS - 1
    assert compute_memory_format(True, torch.float16, "cuda", small) == torch.channels_last
    assert compute_memory_format(True, torch.float32, "cuda", big) == torch.contiguous_format
    assert compute_memory_format(False, torch.float16, "cuda", big) == torch.contiguous_format
    assert compute_memory_format(False, torch.float32, "cpu", big) == torch.channels_last
    assert compute_memory_format(True, torch.float32, "cpu", small) == torch.contiguous_format


def test_fused_modconv_default_official_on_cuda_never_on_cpu():
    assert default_fused_modconv(False, torch.float32, 16, "cuda")  # fp32 inference
    assert default_fused_modconv(False, torch.float16, 1, "cuda")  # batch of one
    assert not default_fused_modconv(False, torch.float16, 16, "cuda")
    assert not default_fused_modconv(True, torch.float32, 16, "cuda")  # training
    assert not default_fused_modconv(False, torch.float32, 1, "cpu")


def test_channels_last_layout_gives_same_values(monkeypatch):
    G = Generator(**{**TINY_G, "synthesis_kwargs": {**TINY_G["synthesis_kwargs"], "architecture": "resnet"}})
    D = Discriminator(**{**TINY_D, "architecture": "skip"})
    z = torch.randn(2, 16)
    outputs = []
    for threshold in (10**9, 0):  # never / always channels_last on CPU
        monkeypatch.setattr(network_layers, "CPU_CHANNELS_LAST_MIN_PIXELS", threshold)
        img = G(z, None, noise_mode="const")
        logits = D(img, None)
        assert img.is_contiguous()
        grads = torch.autograd.grad(logits.sum(), [G.synthesis.b16.conv1.weight, D.b16.conv0.weight])
        outputs.append([img, logits, *grads])
    for a, b in zip(*outputs):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_fp16_blocks_run_in_fp32_on_cpu_and_match_force_fp32():
    kwargs = {**TINY_G, "synthesis_kwargs": {**TINY_G["synthesis_kwargs"], "num_fp16_res": 2, "conv_clamp": 256}}
    G = Generator(**kwargs).eval()
    assert [G.synthesis.b4.use_fp16, G.synthesis.b8.use_fp16, G.synthesis.b16.use_fp16] == [False, True, True]
    D = Discriminator(**{**TINY_D, "num_fp16_res": 2, "conv_clamp": 256}).eval()
    z = torch.randn(2, 16)
    with torch.no_grad():
        img = G(z, None, noise_mode="const")
        assert img.dtype == torch.float32
        torch.testing.assert_close(img, G(z, None, noise_mode="const", force_fp32=True), rtol=0, atol=0)
        logits = D(img, None)
        assert logits.dtype == torch.float32
        torch.testing.assert_close(logits, D(img, None, force_fp32=True), rtol=0, atol=0)


def test_fp16_path_approximates_fp32(monkeypatch):
    """Run the CUDA fp16 path on CPU (half convs work there, slowly): pre-normalisation, casts and clamps."""
    kwargs = {**TINY_G, "synthesis_kwargs": {**TINY_G["synthesis_kwargs"], "num_fp16_res": 2, "conv_clamp": 256}}
    G = Generator(**kwargs).eval()
    D = Discriminator(**{**TINY_D, "num_fp16_res": 2, "conv_clamp": 256}).eval()
    z = torch.randn(2, 16)
    with torch.no_grad():
        img32 = G(z, None, noise_mode="const")
        logits32 = D(img32, None)
        monkeypatch.setattr(
            networks,
            "compute_dtype",
            lambda use_fp16, force_fp32, device: torch.float16 if use_fp16 and not force_fp32 else torch.float32,
        )
        img16 = G(z, None, noise_mode="const", fused_modconv=False)
        img16_fused = G(z, None, noise_mode="const", fused_modconv=True)
        logits16 = D(img32, None)
    assert img16.dtype == torch.float32 and logits16.dtype == torch.float32
    assert (
        G.synthesis.b16.conv1(torch.zeros(1, 16, 16, 16, dtype=torch.float16), torch.zeros(1, 16)).dtype
        == torch.float16
    )
    for img in (img16, img16_fused):
        assert float((img - img32).abs().max()) < 2e-2 * float(img32.abs().max())
    assert float((logits16 - logits32).abs().max()) < 2e-2 * max(1.0, float(logits32.abs().max()))


# ----------------------------------------------------------------------------------------------------
# Discriminator behaviours.


@pytest.mark.parametrize("architecture", ["orig", "skip", "resnet"])
def test_discriminator_architectures_shapes_and_gradients(architecture):
    D = Discriminator(**{**TINY_D, "architecture": architecture})
    img = torch.randn(4, 3, 16, 16, requires_grad=True)
    logits = D(img, None)
    assert logits.shape == (4, 1) and logits.dtype == torch.float32
    logits.sum().backward()
    assert img.grad is not None and img.grad.abs().sum() > 0
    assert [n for n, p in D.named_parameters() if p.grad is None] == []


def test_conditional_discriminator_projects_onto_cmap():
    D = Discriminator(**{**TINY_D, "c_dim": 5}).eval()
    assert D.mapping.fc0.weight.shape[0] == D.b4.cmap_dim == 16
    assert D.b4.out.weight.shape == (16, 16)
    img = torch.randn(4, 3, 16, 16)
    c = torch.eye(5)[:4]
    with torch.no_grad():
        logits = D(img, c)
        cmap = D.mapping(None, c)
        # Recompute the projection from the epilogue's features: <out(x), cmap> / sqrt(cmap_dim).
        x = None
        im = img
        for res in D.block_resolutions:
            x, im = getattr(D, f"b{res}")(x, im)
        h = D.b4.fc(D.b4.conv(D.b4.mbstd(x)).flatten(1))
        expect = (D.b4.out(h) * cmap).sum(1, keepdim=True) / np.sqrt(16)
    torch.testing.assert_close(logits, expect)
    assert not torch.allclose(logits, D(img, c.flip(0)))


def test_freeze_layers_turns_first_layers_into_buffers_with_same_state_dict():
    D = Discriminator(**TINY_D)
    frozen = Discriminator(**{**TINY_D, "block_kwargs": dict(freeze_layers=4)})
    assert sorted(frozen.state_dict()) == sorted(D.state_dict())  # strict loads work both ways
    assert "b16.conv1.weight" not in dict(frozen.named_parameters())
    assert "b8.conv0.weight" in dict(frozen.named_parameters())


def test_r1_penalty_double_backward_matches_finite_differences():
    D = Discriminator(**{**TINY_D, "architecture": "resnet", "c_dim": 3})
    img = torch.randn(4, 3, 16, 16, requires_grad=True)
    c = torch.eye(3)[[0, 1, 2, 0]]
    (r1_grads,) = torch.autograd.grad(D(img, c).sum(), [img], create_graph=True)
    r1_grads.square().sum().backward()
    # Only the output bias cannot influence d(logits)/d(img).
    assert [n for n, p in D.named_parameters() if p.grad is None] == ["b4.out.bias"]

    def penalty() -> float:
        (g,) = torch.autograd.grad(D(img, c).sum(), [img])
        return float(g.double().square().sum())

    # Oracle: central differences along the gradient direction, for weights in smooth regions of the
    # penalty (the epilogue fc and the cmap mapping; lrelu kinks make conv weights too rough for this).
    for w in (D.b4.fc.weight, D.mapping.fc0.weight):
        direction = w.grad / w.grad.norm()
        analytic = float((w.grad * direction).sum())
        eps = 1e-2
        with torch.no_grad():
            w += eps * direction
        plus = penalty()
        with torch.no_grad():
            w -= 2 * eps * direction
        minus = penalty()
        with torch.no_grad():
            w += eps * direction
        assert abs((plus - minus) / (2 * eps) - analytic) <= 1e-2 * abs(analytic)


def test_path_length_gradients_without_weight_gradients_match_full_autograd():
    from torch_utils.ops import conv2d_gradfix

    G = Generator(**TINY_G).train()
    z = torch.randn(2, 16)
    pl_noise = torch.randn(2, 3, 16, 16)
    results = []
    for skip_weight_grads in (False, True):
        G.zero_grad(set_to_none=True)
        ws = G.mapping(z, None)
        img = G.synthesis(ws, noise_mode="const")
        with conv2d_gradfix.no_weight_gradients(skip_weight_grads):
            (pl_grads,) = torch.autograd.grad((img * pl_noise).sum(), [ws], create_graph=True)
        pl_grads.square().sum(2).mean(1).sqrt().mean().backward()
        results.append([pl_grads.detach()] + [p.grad for p in G.parameters()])
    assert sum(g is not None for g in results[0]) > len(results[0]) // 2
    for a, b in zip(*results):
        assert (a is None) == (b is None)
        if a is not None:
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


# ----------------------------------------------------------------------------------------------------
# Checkpoint support and input validation.


def test_init_kwargs_rebuild_identical_networks():
    for cls, kwargs in [(Generator, TINY_G), (Discriminator, TINY_D)]:
        net = cls(**kwargs)
        rebuilt = NETWORK_CLASSES[cls.__name__](**json.loads(json.dumps(net.init_kwargs)))
        rebuilt.load_state_dict(net.state_dict(), strict=True)
        assert rebuilt.init_kwargs == net.init_kwargs
    with pytest.raises(TypeError, match="JSON"):
        Generator(**{**TINY_G, "mapping_kwargs": dict(num_layers=2, activation=torch.relu)})


@pytest.mark.parametrize("bad", [dict(img_resolution=24), dict(img_resolution=2)])
def test_bad_resolution_is_named(bad):
    with pytest.raises(ValueError, match="img_resolution"):
        Generator(**{**TINY_G, **bad})
    with pytest.raises(ValueError, match="img_resolution"):
        Discriminator(**{**TINY_D, **bad})


def test_bad_architecture_is_named():
    with pytest.raises(ValueError, match="'unet'"):
        Discriminator(**{**TINY_D, "architecture": "unet"})
    with pytest.raises(ValueError, match="'unet'"):
        Generator(**{**TINY_G, "synthesis_kwargs": dict(architecture="unet")})


@pytest.mark.cuda
def test_cuda_reproduces_official_outputs_and_runs_fp16():
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    nets = {k: v.cuda() for k, v in load_reference().items()}
    z = torch.from_numpy(ref_array("z")).cuda()
    c = torch.zeros([len(z), 0], device="cuda")
    with torch.no_grad(), torch.backends.cudnn.flags(enabled=True, allow_tf32=False):
        img = nets["G_ema"](z, c, noise_mode="const")
        logits = nets["D"](torch.from_numpy(ref_array("img_G_ema")).cuda(), c)
    assert max_abs_diff(img.cpu(), ref_array("img_G_ema")) <= 1e-3
    assert max_abs_diff(logits.cpu(), ref_array("d_logits")) <= 1e-3

    kwargs = {**TINY_G, "synthesis_kwargs": {**TINY_G["synthesis_kwargs"], "num_fp16_res": 2, "conv_clamp": 256}}
    G = Generator(**kwargs).cuda().train()
    D = Discriminator(**{**TINY_D, "num_fp16_res": 2, "conv_clamp": 256}).cuda()
    img = G(torch.randn(4, 16, device="cuda"), None)
    assert img.dtype == torch.float32
    D(img, None).sum().backward()
    assert G.synthesis.b16.conv1.weight.grad is not None
    x16 = torch.zeros(1, 16, 16, 16, device="cuda", dtype=torch.float16)
    assert G.synthesis.b16.conv1(x16, torch.zeros(1, 16, device="cuda")).dtype == torch.float16
