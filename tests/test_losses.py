"""Tests for ftn.losses: VGG features and conventions, weight loading, feature losses, ESRGAN's GAN.

Tiny tensors, CPU, no network. The test that reads the shared VGG16 weights skips when ../shared is absent.
"""

from __future__ import annotations

import ast
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors import safe_open

from ftn import assets
from ftn.losses import (
    ContentLoss,
    PerceptualLoss,
    StyleLoss,
    VGG16Features,
    VGGFeatures,
    VGGStyleDiscriminator,
    discriminator_loss,
    find_vgg_weights,
    generator_loss,
    gram_matrix,
    layer_indices,
    relativistic_gan_losses,
    total_variation,
)
from ftn.losses import vgg as vgg_module
from ftn.losses.vgg import convention_from_metadata, features_state_dict, infer_arch

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
SHARED_VGG = SHARED / "weights" / "vgg16_imagenet_features_caffe.safetensors"
needs_shared_vgg = pytest.mark.skipif(
    not SHARED_VGG.is_file(), reason=f"shared VGG16 weights not found at {SHARED_VGG} (the shared folder)"
)


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def conv(cin: int, cout: int, k: int = 3, bias: bool = True) -> int:
    return cin * cout * k * k + (cout if bias else 0)


def small_vgg(deepest: str = "relu1_2", convention: str | None = "caffe_bgr_255", seed: int = 0) -> VGGFeatures:
    """A randomly initialised VGG16 built only up to ``deepest`` (cheap)."""
    torch.manual_seed(seed)
    return VGGFeatures("vgg16", convention=convention, layers=[deepest])


# ---------------------------------------------------------------- layout


@pytest.mark.parametrize(
    "arch, name, index",
    [
        ("vgg16", "conv1_1", 0), ("vgg16", "relu1_2", 3), ("vgg16", "pool1", 4), ("vgg16", "relu2_2", 8),
        ("vgg16", "relu3_3", 15), ("vgg16", "relu4_3", 22), ("vgg16", "conv5_3", 28), ("vgg16", "relu5_3", 29),
        ("vgg16", "pool5", 30),
        ("vgg19", "relu1_2", 3), ("vgg19", "relu2_2", 8), ("vgg19", "relu3_4", 17), ("vgg19", "relu4_4", 26),
        ("vgg19", "conv5_4", 34), ("vgg19", "relu5_4", 35), ("vgg19", "pool5", 36),
    ],
)
def test_layer_indices(arch: str, name: str, index: int) -> None:
    assert layer_indices(arch)[name] == index


@pytest.mark.parametrize("arch, modules, convs", [("vgg16", 31, 13), ("vgg19", 37, 16)])
def test_layer_table_size(arch: str, modules: int, convs: int) -> None:
    table = layer_indices(arch)
    assert sorted(table.values()) == list(range(modules))
    assert sum(n.startswith("conv") for n in table) == convs


@pytest.mark.parametrize("arch, expected", [("vgg16", 14_714_688), ("vgg19", 20_024_384)])
def test_parameter_count(arch: str, expected: int) -> None:
    with torch.device("meta"):
        model = VGGFeatures(arch)
    widths = [64, 64, 128, 128] + [256] * (3 if arch == "vgg16" else 4) + [512] * (6 if arch == "vgg16" else 8)
    computed = sum(conv(a, b) for a, b in zip([3, *widths[:-1]], widths))
    assert n_params(model) == computed == expected
    # torchvision's key layout: <index>.weight / <index>.bias of the convolutions only
    convs = [i for n, i in layer_indices(arch).items() if n.startswith("conv")]
    assert set(model.state_dict()) == {f"{i}.{p}" for i in convs for p in ("weight", "bias")}


def test_frozen_eval_and_truncated() -> None:
    model = small_vgg("relu2_2")
    assert model.depth == 9 and len(list(model.children())) == 9
    assert all(not p.requires_grad for p in model.parameters())
    model.train()
    assert not model.training
    with pytest.raises(ValueError, match="deeper than this truncated"):
        model(torch.rand(1, 3, 8, 8), ["relu3_1"])
    with pytest.raises(ValueError, match="unknown vgg16 layers"):
        model(torch.rand(1, 3, 8, 8), ["relu9_9"])


def test_forward_returns_requested_layers_and_input_gradients() -> None:
    model = small_vgg("relu2_2")
    x = torch.rand(2, 3, 8, 8, requires_grad=True)
    features = model(x, ["relu2_2", "conv1_2", "pool1"])
    assert list(features) == ["relu2_2", "conv1_2", "pool1"]
    assert features["conv1_2"].shape == (2, 64, 8, 8) and features["relu2_2"].shape == (2, 128, 4, 4)
    assert (features["conv1_2"] < 0).any()  # pre-activation features are not overwritten by the ReLU
    torch.testing.assert_close(features["pool1"], F.max_pool2d(features["conv1_2"].relu(), 2))
    assert list(model(x)) == ["relu2_2"]  # default: the layers it was built for
    features["relu2_2"].sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


# ---------------------------------------------------------------- input conventions


def test_caffe_convention_by_hand() -> None:
    model = small_vgg(convention="caffe_bgr_255")
    x = torch.tensor([[[0.0, 0.5], [1.0, 0.25]], [[0.1, 0.2], [0.3, 0.4]], [[1.0, 0.0], [0.6, 0.8]]])[None]
    mean_bgr = [103.939, 116.779, 123.68]
    expected = torch.stack([x[0, 2 - c] * 255.0 - mean_bgr[c] for c in range(3)])[None]
    torch.testing.assert_close(model.preprocess(x), expected)


def test_torchvision_convention_by_hand() -> None:
    model = small_vgg(convention="torchvision_rgb")
    x = torch.rand(1, 3, 2, 2)
    mean, std = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
    expected = torch.stack([(x[0, c] - mean[c]) / std[c] for c in range(3)])[None]
    torch.testing.assert_close(model.preprocess(x), expected)


@pytest.mark.parametrize("alias, canonical", [("caffe", "caffe_bgr_255"), ("Torchvision", "torchvision_rgb"),
                                              ("caffe_bgr_255", "caffe_bgr_255")])
def test_convention_aliases(alias: str, canonical: str) -> None:
    assert small_vgg(convention=alias).convention == canonical


def test_unknown_or_missing_convention() -> None:
    with pytest.raises(ValueError, match="unknown VGG input convention"):
        small_vgg(convention="yuv_0_1")
    with pytest.raises(ValueError, match="convention="):
        small_vgg(convention=None)(torch.rand(1, 3, 4, 4))


@pytest.mark.parametrize(
    "metadata, expected",
    [
        ({"input": "BGR, 0-255, subtract mean [103.939, 116.779, 123.68]"}, "caffe_bgr_255"),
        ({"input": "RGB in [0,1], normalise mean [0.485, 0.456, 0.406]"}, "torchvision_rgb"),
        ({"convention": "torchvision_rgb"}, "torchvision_rgb"),
        ({"architecture": "vgg16"}, None),
        (None, None),
    ],
)
def test_convention_from_metadata(metadata: dict[str, str] | None, expected: str | None) -> None:
    assert convention_from_metadata(metadata) == expected


def test_convention_from_unmappable_metadata() -> None:
    with pytest.raises(ValueError, match="convention="):
        convention_from_metadata({"input": "YCbCr, 16-235"})


# ---------------------------------------------------------------- loading weights


@needs_shared_vgg
def test_load_shared_weights() -> None:
    with safe_open(str(SHARED_VGG), framework="pt") as f:
        keys = list(f.keys())
        tensors = {k: f.get_tensor(k) for k in keys}
    assert len(keys) == 26
    model = VGG16Features.load(SHARED_VGG)
    assert model.arch == "vgg16" and model.convention == "caffe_bgr_255"
    state = model.state_dict()
    assert set(state) == set(keys)
    for key in keys:
        torch.testing.assert_close(state[key], tensors[key], rtol=0, atol=0)

    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        features = model(x, ["relu1_2", "relu2_2", "relu3_3", "relu4_3", "conv5_3"])
    shapes = {"relu1_2": (1, 64, 32, 32), "relu2_2": (1, 128, 16, 16), "relu3_3": (1, 256, 8, 8),
              "relu4_3": (1, 512, 4, 4), "conv5_3": (1, 512, 2, 2)}
    for name, shape in shapes.items():
        assert features[name].shape == shape
        assert torch.isfinite(features[name]).all()

    truncated = VGG16Features.load(SHARED_VGG, layers=["relu2_2"])
    assert truncated.depth == 9
    with torch.no_grad():
        torch.testing.assert_close(truncated(x)["relu2_2"], features["relu2_2"])
    with pytest.warns(UserWarning, match="caffe_bgr_255"):
        overridden = VGG16Features.load(SHARED_VGG, convention="torchvision_rgb", layers=["relu1_1"])
    assert overridden.convention == "torchvision_rgb"


def test_load_torchvision_style_pth(tmp_path: Path) -> None:
    torch.manual_seed(1)
    source = VGGFeatures("vgg16")
    state = {f"features.{k}": v for k, v in source.state_dict().items()}
    state["classifier.0.weight"] = torch.zeros(4, 4)  # a full vgg16 state dict also holds the classifier
    path = tmp_path / "vgg16-random.pth"
    torch.save(state, path)

    model = VGG16Features.load(path, convention="torchvision_rgb")
    assert model.arch == "vgg16" and model.convention == "torchvision_rgb"
    for key, value in source.state_dict().items():
        torch.testing.assert_close(model.state_dict()[key], value, rtol=0, atol=0)
    with pytest.warns(UserWarning, match="assuming torchvision's"):  # a bare .pth: torchvision's files
        assert VGG16Features.load(path).convention == "torchvision_rgb"


def test_infer_arch_from_state_dicts() -> None:
    for arch in ("vgg16", "vgg19"):
        with torch.device("meta"):
            state = {f"module.features.{k}": v for k, v in VGGFeatures(arch).state_dict().items()}
        assert infer_arch(features_state_dict(state)) == arch
    with pytest.raises(ValueError, match="neither VGG16"):
        infer_arch({"0.weight": torch.zeros(1), "0.bias": torch.zeros(1)})
    with pytest.raises(ValueError, match="batch-norm"):
        features_state_dict({"features.1.running_mean": torch.zeros(64)})


def test_refuses_pickled_objects(tmp_path: Path) -> None:
    path = tmp_path / "evil.pth"
    torch.save({"0.weight": torch.zeros(1), "note": Path("x")}, path)
    with pytest.raises(ValueError, match="weights_only"):
        VGG16Features.load(path, convention="caffe")


# ---------------------------------------------------------------- finding weights


def fake_checkout(root: Path) -> Path:
    """A source-checkout layout under ``root`` (``repo/pyproject.toml``, ``repo/src/ftn``); its package dir."""
    package = root / "repo" / "src" / "ftn"
    package.mkdir(parents=True)
    (root / "repo" / "pyproject.toml").write_text("")
    return package


def test_missing_weights_message(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(assets, "_PACKAGE_DIR", fake_checkout(tmp_path))  # a checkout with no ../shared
    monkeypatch.setenv("FTN_VGG_WEIGHTS", str(tmp_path / "absent.safetensors"))
    with pytest.raises(FileNotFoundError, match="FTN_VGG_WEIGHTS"):
        find_vgg_weights()
    monkeypatch.delenv("FTN_VGG_WEIGHTS")
    with pytest.raises(FileNotFoundError) as info:
        find_vgg_weights()
    message = str(info.value)
    assert "FTN_VGG_WEIGHTS" in message and "Perceptual" in message and "vgg16-397923af.pth" in message
    assert "vgg_weights" in message and str(tmp_path / "shared" / "weights") in message
    assert "\n" not in message
    with pytest.raises(FileNotFoundError, match="FTN_VGG_WEIGHTS"):
        find_vgg_weights(tmp_path / "also-absent.pth")


def test_find_weights_order(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(assets, "_PACKAGE_DIR", fake_checkout(tmp_path))
    default = tmp_path / "shared" / "weights" / vgg_module.DEFAULT_WEIGHTS_NAME
    explicit, env = tmp_path / "explicit.pth", tmp_path / "env.pth"
    default.parent.mkdir(parents=True)
    for p in (explicit, env, default):
        p.write_bytes(b"")
    monkeypatch.delenv("FTN_VGG_WEIGHTS", raising=False)
    assert vgg_module.default_weight_locations() == [default]
    assert find_vgg_weights() == default
    monkeypatch.setenv("FTN_VGG_WEIGHTS", str(env))
    assert find_vgg_weights() == env
    assert find_vgg_weights(explicit) == explicit


def test_default_locations_include_repo_shared() -> None:
    assert SHARED_VGG in vgg_module.default_weight_locations()


# ---------------------------------------------------------------- feature losses


def test_gram_matches_einsum() -> None:
    f = torch.randn(2, 5, 3, 4, generator=torch.Generator().manual_seed(0))
    expected = torch.einsum("bchw,bdhw->bcd", f, f) / (5 * 3 * 4)
    torch.testing.assert_close(gram_matrix(f), expected)


def test_gram_gradcheck() -> None:
    f = torch.randn(1, 2, 3, 3, dtype=torch.float64, requires_grad=True, generator=torch.Generator().manual_seed(0))
    assert torch.autograd.gradcheck(gram_matrix, (f,))


def test_style_loss_zero_on_style_image_and_positive_elsewhere() -> None:
    vgg = small_vgg("relu4_3")
    gen = torch.Generator().manual_seed(0)
    style = torch.rand(3, 16, 16, generator=gen)
    loss = StyleLoss(vgg, style, weight=10.0)
    assert loss.layers == ("relu1_2", "relu2_2", "relu3_3", "relu4_3")
    assert loss(style[None]).item() == 0.0
    other = torch.rand(2, 3, 16, 16, generator=gen, requires_grad=True)
    value = loss(other)
    assert value.item() > 0
    value.backward()
    assert other.grad is not None and other.grad.abs().sum() > 0
    # the same value from precomputed features, and weight scales it
    with torch.no_grad():
        features = vgg(other, loss.layers)
        torch.testing.assert_close(loss.from_features(features), value.detach())
        torch.testing.assert_close(StyleLoss(vgg, style, weight=1.0)(other) * 10.0, value.detach())


def test_style_loss_by_hand() -> None:
    vgg = small_vgg("relu2_2")
    gen = torch.Generator().manual_seed(2)
    style, images = torch.rand(1, 3, 12, 12, generator=gen), torch.rand(2, 3, 8, 8, generator=gen)
    loss = StyleLoss(vgg, style, layers={"relu1_2": 2.0, "relu2_2": 0.5}, weight=3.0)
    with torch.no_grad():
        fs, fi = vgg(style, ["relu1_2", "relu2_2"]), vgg(images, ["relu1_2", "relu2_2"])
        expected = 3.0 * sum(w * ((gram_matrix(fi[n]) - gram_matrix(fs[n])) ** 2).mean()
                             for n, w in (("relu1_2", 2.0), ("relu2_2", 0.5)))
        torch.testing.assert_close(loss(images), expected)


def test_content_loss() -> None:
    vgg = small_vgg("relu2_2")
    gen = torch.Generator().manual_seed(3)
    content = torch.rand(1, 3, 8, 8, generator=gen)
    output = torch.rand(1, 3, 8, 8, generator=gen, requires_grad=True)
    loss = ContentLoss(vgg, weight=2.0)
    assert loss(content, content).item() == 0.0
    value = loss(output, content)
    with torch.no_grad():
        expected = 2.0 * F.mse_loss(vgg(output, ["relu2_2"])["relu2_2"], vgg(content, ["relu2_2"])["relu2_2"])
    torch.testing.assert_close(value.detach(), expected)


@pytest.mark.parametrize("criterion, fn", [("l1", F.l1_loss), ("l2", F.mse_loss)])
def test_perceptual_loss_by_hand(criterion: str, fn) -> None:
    vgg = small_vgg("relu2_1")
    gen = torch.Generator().manual_seed(4)
    target = torch.rand(2, 3, 8, 8, generator=gen, requires_grad=True)
    output = torch.rand(2, 3, 8, 8, generator=gen, requires_grad=True)
    loss = PerceptualLoss(vgg, {"conv1_2": 1.0, "relu2_1": 0.5}, criterion=criterion)
    value = loss(output, target)
    with torch.no_grad():
        fo, ft = vgg(output, ["conv1_2", "relu2_1"]), vgg(target, ["conv1_2", "relu2_1"])
        expected = fn(fo["conv1_2"], ft["conv1_2"]) + 0.5 * fn(fo["relu2_1"], ft["relu2_1"])
    torch.testing.assert_close(value.detach(), expected)
    value.backward()
    assert output.grad is not None and target.grad is None  # no gradient through the target
    assert loss(target.detach(), target.detach()).item() == 0.0


@pytest.mark.parametrize("arch, layer", [("vgg16", "conv5_3"), ("vgg19", "conv5_4")])
def test_perceptual_default_layer(arch: str, layer: str) -> None:
    with torch.device("meta"):
        vgg = VGGFeatures(arch)
    loss = PerceptualLoss(vgg)
    assert loss.weights == {layer: 1.0} and loss.criterion == "l1"


def test_loss_rejects_layers_missing_from_truncated_vgg() -> None:
    with pytest.raises(ValueError, match="deeper than this truncated"):
        PerceptualLoss(small_vgg("relu1_2"), {"conv5_3": 1.0})
    with pytest.raises(ValueError, match="criterion"):
        PerceptualLoss(small_vgg("relu1_2"), ["relu1_2"], criterion="huber")


def test_total_variation_by_hand() -> None:
    x = torch.tensor([[[[0.0, 1.0], [3.0, 7.0]]]])
    # vertical |3-0|, |7-1| -> mean 4.5; horizontal |1-0|, |7-3| -> mean 2.5
    assert total_variation(x).item() == pytest.approx(7.0)
    assert total_variation(torch.ones(1, 3, 4, 4)).item() == 0.0


# ---------------------------------------------------------------- relativistic GAN


def softplus(v: float) -> float:
    return math.log1p(math.exp(v))


@pytest.mark.parametrize(
    "real, fake",
    [([1.0, 2.0], [0.0, -1.0]), ([0.5, -0.5, 2.0], [1.0, 0.0, -3.0]), ([0.0], [0.0])],
)
def test_relativistic_losses_by_hand(real: list[float], fake: list[float]) -> None:
    mr, mf = sum(real) / len(real), sum(fake) / len(fake)
    # BCE(x, 1) = softplus(-x), BCE(x, 0) = softplus(x)
    g = 0.5 * (sum(softplus(r - mf) for r in real) / len(real) + sum(softplus(-(f - mr)) for f in fake) / len(fake))
    d = 0.5 * (sum(softplus(-(r - mf)) for r in real) / len(real) + sum(softplus(f - mr) for f in fake) / len(fake))
    rt, ft = torch.tensor(real).view(-1, 1), torch.tensor(fake).view(-1, 1)
    g_loss, d_loss = relativistic_gan_losses(rt, ft)
    assert g_loss.item() == pytest.approx(g, rel=1e-6)
    assert d_loss.item() == pytest.approx(d, rel=1e-6)
    assert generator_loss(rt, ft).item() == pytest.approx(g, rel=1e-6)
    assert discriminator_loss(rt, ft, detach_means=True).item() == pytest.approx(d, rel=1e-6)


def test_relativistic_gradients() -> None:
    real = torch.tensor([[1.0], [2.0], [-0.5]], requires_grad=True)
    fake = torch.tensor([[0.0], [-1.0], [0.3]], requires_grad=True)
    generator_loss(real, fake).backward()
    assert real.grad is None  # the real logits are detached in the generator's loss
    assert fake.grad is not None and fake.grad.abs().sum() > 0

    real.grad = fake.grad = None
    discriminator_loss(real, fake).backward()
    full = (real.grad.clone(), fake.grad.clone())
    real.grad = fake.grad = None
    discriminator_loss(real, fake, detach_means=True).backward()
    assert full[0].abs().sum() > 0 and full[1].abs().sum() > 0
    # detaching the means drops their gradient: the two differ
    assert not torch.allclose(full[0], real.grad)


# ---------------------------------------------------------------- discriminator


def discriminator_params(in_ch: int, nf: int, size: int) -> int:
    widths = [nf, 2 * nf, 4 * nf, 8 * nf, 8 * nf]
    total = conv(in_ch, nf, 3) + conv(nf, nf, 4, bias=False) + 2 * nf
    for a, b in zip(widths, widths[1:]):
        total += conv(a, b, 3, bias=False) + 2 * b + conv(b, b, 4, bias=False) + 2 * b
    return total + (8 * nf * (size // 32) ** 2 * 100 + 100) + (100 + 1)


@pytest.mark.parametrize(
    "kwargs, expected",
    [
        ({}, 14_499_401),  # ESRGAN's VGG128 = BasicSR's VGGStyleDiscriminator128
        ({"size": "mini", "input_size": 64}, discriminator_params(3, 32, 64)),
        ({"input_size": 256}, discriminator_params(3, 64, 256)),
        ({"in_channels": 1, "base_channels": 16, "input_size": 32}, discriminator_params(1, 16, 32)),
    ],
)
def test_discriminator_parameter_count(kwargs: dict, expected: int) -> None:
    with torch.device("meta"):
        model = VGGStyleDiscriminator(**kwargs)
    assert n_params(model) == expected
    assert discriminator_params(3, 64, 128) == 14_499_401


def test_discriminator_basicsr_key_names() -> None:
    with torch.device("meta"):
        keys = set(VGGStyleDiscriminator().state_dict())
    assert {"conv0_0.weight", "conv0_0.bias", "conv0_1.weight", "bn0_1.running_mean", "conv4_1.weight",
            "bn4_1.weight", "linear1.weight", "linear2.bias"} <= keys
    assert "bn0_0.weight" not in keys and "conv1_0.bias" not in keys


@pytest.mark.parametrize("kwargs, side, batch", [({}, 128, 2), ({"size": "mini", "input_size": 64}, 64, 3)])
def test_discriminator_output_shape(kwargs: dict, side: int, batch: int) -> None:
    torch.manual_seed(0)
    model = VGGStyleDiscriminator(**kwargs)
    with torch.no_grad():
        out = model(torch.rand(batch, 3, side, side))
    assert out.shape == (batch, 1) and torch.isfinite(out).all()


def test_discriminator_rejects_bad_sizes() -> None:
    with pytest.raises(ValueError, match="multiple of 32"):
        VGGStyleDiscriminator(input_size=100)
    with pytest.raises(ValueError, match="size must be"):
        VGGStyleDiscriminator(size="huge")
    model = VGGStyleDiscriminator(size="mini", input_size=32)
    with pytest.raises(ValueError, match=r"\(B, 3, 32, 32\)"):
        model(torch.rand(1, 3, 64, 64))


def test_import_ftn_stays_light() -> None:
    """No module of ftn outside ftn.losses imports it at module level (``import ftn`` stays light)."""
    src = Path(__file__).resolve().parents[1] / "src" / "ftn"
    offenders = []
    for path in src.rglob("*.py"):
        if "losses" in path.relative_to(src).parts:
            continue
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.ImportFrom):
                names = [node.module or ""] + [a.name for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            if any(n == "losses" or n.endswith(".losses") or ".losses." in n for n in names):
                offenders.append(str(path.relative_to(src)))
    assert offenders == []
