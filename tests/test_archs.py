"""Tests for ftn.archs: parameter counts, shapes, options, registry, block patterns."""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

import ftn.archs as archs
from ftn.archs import ARCHS, AdaFMNet, CFSNet, DnCNN, ResUNet, RRDBNet, TransformNet, build_arch


@pytest.fixture(autouse=True)
def _no_grad_one_thread() -> Iterator[None]:
    # Scoped to each test so nothing leaks into other test files. One thread: the inputs are
    # tiny, and OpenMP threads spin badly when the (2-core) machine is shared with other jobs.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.no_grad():
            yield
    finally:
        torch.set_num_threads(threads)


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def conv(cin: int, cout: int, k: int = 3) -> int:
    """Parameters of a k x k conv with bias."""
    return cin * cout * k * k + cout


def instance_norm(c: int) -> int:
    """Parameters of an affine InstanceNorm2d."""
    return 2 * c


def blocks_of(model: torch.nn.Module) -> list[str]:
    return [n for n, _ in model.named_modules() if re.fullmatch(model.block_pattern, n)]


# ---------------------------------------------------------------- parameter counts


def test_adafm_net_full_params() -> None:
    assert n_params(AdaFMNet()) == 1_406_787


def test_cfsnet_sr_params() -> None:
    # Paper's Table 4: 2.37M = head 1,792 + 30 * 73,856 + upsample 147,712 + tail 1,731.
    model = CFSNet(blocks=30, scale=2)
    assert n_params(model) == 1_792 + 30 * 73_856 + 147_712 + 1_731 == 2_366_915
    assert n_params(CFSNet(scale=2)) == 2_366_915  # 30 blocks is the SR default


def test_cfsnet_denoise_params() -> None:
    assert n_params(CFSNet()) == conv(3, 64) + 10 * 2 * conv(64, 64) + conv(64, 3)


def test_cfsnet_upsamplers() -> None:
    head_body_tail = conv(3, 64) + 2 * 2 * conv(64, 64) + conv(64, 3)
    assert n_params(CFSNet(blocks=2, scale=3)) == head_body_tail + conv(64, 64 * 9)
    assert n_params(CFSNet(blocks=2, scale=4)) == head_body_tail + 2 * conv(64, 64 * 4)


def test_rrdbnet_full_params() -> None:
    assert n_params(RRDBNet()) == 16_697_987


def test_rrdbnet_scale_changes_only_conv_first() -> None:
    base = n_params(RRDBNet("mini"))
    first = conv(3, 32)
    assert n_params(RRDBNet("mini", scale=2)) == base - first + conv(3 * 4, 32)
    assert n_params(RRDBNet("mini", scale=1)) == base - first + conv(3 * 16, 32)


def test_transform_net_full_params() -> None:
    expected = (
        conv(3, 32, 9) + instance_norm(32)  # conv1, in1
        + conv(32, 64) + instance_norm(64)  # conv2, in2
        + conv(64, 128) + instance_norm(128)  # conv3, in3
        + 5 * (2 * (conv(128, 128) + instance_norm(128)))  # res1..res5
        + conv(128, 64) + instance_norm(64)  # deconv1, in4
        + conv(64, 32) + instance_norm(32)  # deconv2, in5
        + conv(32, 3, 9)  # deconv3
    )
    assert expected == 1_679_235
    assert n_params(TransformNet()) == expected


def test_mini_params() -> None:
    assert n_params(AdaFMNet("mini")) == (
        conv(3, 32) + 8 * 2 * conv(32, 32) + conv(32, 32) + conv(32, 128) + conv(32, 32)
        + conv(32, 3)
    )
    assert n_params(CFSNet("mini")) == conv(3, 32) + 4 * 2 * conv(32, 32) + conv(32, 3)
    rdb = conv(32, 32) + conv(64, 32) + conv(96, 32) + conv(128, 32) + conv(160, 32)
    assert n_params(RRDBNet("mini")) == conv(3, 32) + 3 * 3 * rdb + 4 * conv(32, 32) + conv(32, 3)
    assert n_params(TransformNet("mini")) < 400_000


# ---------------------------------------------------------------- shapes


@pytest.mark.parametrize(
    ("name", "options", "scale"),
    [
        ("adafm_net", {}, 1),
        ("adafm_net", {"image_skip": True}, 1),
        ("cfsnet", {}, 1),
        ("cfsnet", {"image_skip": True}, 1),
        ("cfsnet", {"scale": 2}, 2),
        ("cfsnet", {"scale": 3}, 3),
        ("cfsnet", {"scale": 4}, 4),
        ("rrdbnet", {"scale": 1}, 1),
        ("rrdbnet", {"scale": 2}, 2),
        ("rrdbnet", {"scale": 4}, 4),
        ("transform_net", {}, 1),
        ("resunet", {}, 1),
        ("resunet", {"scales": 1}, 1),
        ("resunet", {"scales": 4, "image_skip": False}, 1),
        ("dncnn", {"in_channels": 3, "out_channels": 3}, 1),
    ],
)
@pytest.mark.parametrize("hw", [(33, 47), (16, 20), (5, 3), (1, 2)])
def test_mini_output_shape(name: str, options: dict, scale: int, hw: tuple[int, int]) -> None:
    model = build_arch(name, size="mini", **options).eval()
    x = torch.rand(2, 3, *hw)
    y = model(x)
    assert y.shape == (2, 3, hw[0] * scale, hw[1] * scale)
    assert torch.isfinite(y).all()


@pytest.mark.parametrize(
    ("name", "options", "scale"),
    [
        ("adafm_net", {}, 1),
        ("cfsnet", {}, 1),
        ("rrdbnet", {"scale": 4}, 4),
        ("rrdbnet", {"scale": 1}, 1),
        ("transform_net", {}, 1),
        ("resunet", {}, 1),
    ],
)
def test_full_output_shape(name: str, options: dict, scale: int) -> None:
    model = build_arch(name, **options).eval()
    x = torch.rand(1, 3, 9, 7)
    assert model(x).shape == (1, 3, 9 * scale, 7 * scale)


def test_channel_overrides() -> None:
    model = AdaFMNet("mini", in_channels=1, out_channels=1, image_skip=True)
    assert model(torch.rand(1, 1, 11, 13)).shape == (1, 1, 11, 13)
    model = RRDBNet("mini", in_channels=1, out_channels=2, scale=2)
    assert model(torch.rand(1, 1, 7, 5)).shape == (1, 2, 14, 10)
    model = TransformNet("mini", in_channels=1, out_channels=4, channels=8, blocks=1)
    assert model(torch.rand(1, 1, 7, 5)).shape == (1, 4, 7, 5)


@pytest.mark.parametrize("cls", [AdaFMNet, CFSNet, ResUNet])
def test_image_skip_adds_input(cls: type) -> None:
    model = cls("mini", image_skip=True)
    last = model.conv_last if cls is AdaFMNet else model.tail
    torch.nn.init.zeros_(last.weight)
    torch.nn.init.zeros_(last.bias)
    x = torch.rand(1, 3, 9, 10)
    assert torch.equal(model(x), x)


def test_padding_does_not_leak_into_even_sizes() -> None:
    # On an even-sized input AdaFM-Net's pad/crop must be a no-op: same as the bare layer stack.
    model = AdaFMNet("mini").eval()
    x = torch.rand(1, 3, 8, 10)
    feat = model.conv_first(x)
    feat = feat + model.conv_body(model.body(feat))
    out = model.relu(model.pixel_shuffle(model.conv_up(feat)))
    out = model.conv_last(model.relu(model.conv_hr(out)))
    torch.testing.assert_close(model(x), out)


def test_transform_net_output_not_clamped() -> None:
    model = TransformNet("mini")
    torch.nn.init.constant_(model.deconv3.conv2d.bias, 5.0)
    assert model(torch.rand(1, 3, 8, 8)).min() > 1.0


# ---------------------------------------------------------------- block patterns and key layout


@pytest.mark.parametrize(
    ("model", "count"),
    [
        (AdaFMNet(), 16),
        (AdaFMNet("mini"), 8),
        (CFSNet(), 10),
        (CFSNet(scale=4), 30),
        (CFSNet("mini"), 4),
        (RRDBNet("mini"), 3),
        (TransformNet(), 5),
        (TransformNet("mini"), 3),
        (AdaFMNet("mini", blocks=2), 2),
        (ResUNet("mini"), 10),
        (ResUNet(), 28),
        (DnCNN(), 15),
        (DnCNN(depth=20), 18),
        (DnCNN("mini"), 4),
    ],
    ids=lambda v: v if isinstance(v, int) else f"{type(v).__name__}-{v.arch_options['size']}",
)
def test_block_pattern_count(model: torch.nn.Module, count: int) -> None:
    names = blocks_of(model)
    assert len(names) == count
    # Only whole blocks match, never their children.
    assert all(not a.startswith(b + ".") for a in names for b in names)


def test_rrdbnet_full_block_count() -> None:
    assert len(blocks_of(RRDBNet())) == 23


def test_rrdbnet_basicsr_key_layout() -> None:
    model = RRDBNet("mini", blocks=2)
    singles = ("conv_first", "conv_body", "conv_up1", "conv_up2", "conv_hr", "conv_last")
    expected = {f"{m}.{t}" for m in singles for t in ("weight", "bias")}
    expected |= {
        f"body.{b}.rdb{r}.conv{c}.{t}"
        for b in range(2)
        for r in (1, 2, 3)
        for c in range(1, 6)
        for t in ("weight", "bias")
    }
    assert set(model.state_dict()) == expected


def test_transform_net_pytorch_examples_key_layout() -> None:
    keys = set(TransformNet().state_dict())
    for key in ("conv1.conv2d.weight", "in1.weight", "res5.conv2.conv2d.bias", "res1.in2.bias",
                "deconv1.conv2d.weight", "in5.bias", "deconv3.conv2d.weight"):
        assert key in keys


# ---------------------------------------------------------------- registry and options


def test_registry_names() -> None:
    assert set(ARCHS) == {"adafm_net", "cfsnet", "dncnn", "resunet", "rrdbnet", "transform_net"}
    for name, cls in ARCHS.items():
        assert cls.arch_name == name
        assert isinstance(cls.block_pattern, str)


def test_build_arch_unknown_name() -> None:
    with pytest.raises(ValueError, match="adafm_net.*cfsnet.*rrdbnet.*transform_net"):
        build_arch("unet")


def test_resunet_scales_and_receptive_field() -> None:
    # the multi-scale point: one pixel's output depends on inputs far beyond a single-scale mini's reach
    model = ResUNet("mini").eval()
    assert model.size_multiple == 4 and len(model.down) == 2
    x = torch.rand(1, 3, 64, 64, requires_grad=True)
    with torch.enable_grad():
        model(x)[0, :, 32, 32].sum().backward()
    reach = (x.grad.abs().sum((0, 1)) > 0).nonzero()
    assert int(reach[:, 0].max() - reach[:, 0].min()) >= 40


def test_resunet_every_layer_is_a_conv2d() -> None:
    # FTN, DNI and AdaFM attach to nn.Conv2d; nothing else in the network has weights
    model = ResUNet("mini")
    weighted = {type(m) for m in model.modules() if any(p is not None for p in m.parameters(recurse=False))}
    assert weighted == {torch.nn.Conv2d}


def test_build_arch_unknown_option() -> None:
    with pytest.raises(TypeError, match="num_feat"):
        build_arch("rrdbnet", num_feat=64)


@pytest.mark.parametrize(
    ("name", "options"),
    [
        ("adafm_net", {"size": "huge"}),
        ("adafm_net", {"channels": 0}),
        ("adafm_net", {"blocks": True}),
        ("adafm_net", {"in_channels": 1, "image_skip": True}),
        ("cfsnet", {"scale": 5}),
        ("cfsnet", {"scale": 2, "image_skip": True}),
        ("rrdbnet", {"scale": 3}),
        ("transform_net", {"channels": 2.5}),
    ],
)
def test_bad_option_values(name: str, options: dict) -> None:
    with pytest.raises(ValueError):
        build_arch(name, **options)


@pytest.mark.parametrize(
    ("name", "options"),
    [
        ("adafm_net", {"size": "mini", "image_skip": True}),
        ("adafm_net", {"size": "mini", "channels": 16}),
        ("cfsnet", {"size": "mini", "scale": 3}),
        ("cfsnet", {"blocks": 2, "channels": 8}),
        ("rrdbnet", {"size": "mini", "scale": 2, "growth": 8}),
        ("rrdbnet", {"size": "mini"}),
        ("transform_net", {"size": "mini"}),
        ("transform_net", {"blocks": 2}),
        ("dncnn", {"size": "mini", "in_channels": 3, "out_channels": 3}),
        ("dncnn", {"depth": 20}),
    ],
)
def test_arch_options_round_trip(name: str, options: dict) -> None:
    model = build_arch(name, **options)
    assert model.arch_name == name
    restored = json.loads(json.dumps(model.arch_options))
    rebuilt = build_arch(name, **restored)
    assert rebuilt.arch_options == model.arch_options
    assert n_params(rebuilt) == n_params(model)
    # Same layout: the state dict loads strictly.
    rebuilt.load_state_dict(model.state_dict())


def test_no_method_imports() -> None:
    arch_dir = Path(archs.__file__).parent
    files = sorted(arch_dir.glob("*.py"))
    assert len(files) >= 5
    for path in files:
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                modules = [("." * node.level) + (node.module or "")]
            else:
                continue
            for module in modules:
                assert "methods" not in module and "control" not in module, (path.name, module)
