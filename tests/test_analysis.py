"""ftn.eval.analysis: filter analysis (Table 3), colour drift and smoothness along alpha, linear alpha."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn as nn

import ftn
from ftn.eval.analysis import (
    alpha_error,
    alpha_path,
    best_alpha,
    filter_analysis,
    filter_cosine_similarity,
    kernel_mae,
    largest_drift,
    largest_step,
    level_kernels,
    linear_alpha,
)
from ftn.eval.metrics import psnr, ssim


def _net() -> nn.Module:
    torch.manual_seed(0)
    return ftn.build_arch("adafm_net", size="mini", channels=8, blocks=1, image_skip=True)


def _convs(module: nn.Module) -> list[str]:
    return [n for n, m in module.named_modules() if isinstance(m, nn.Conv2d)]


# -- filter analysis -------------------------------------------------------------------------------


@pytest.mark.parametrize("groups", [1, 4, 16])
def test_ftn_at_initialisation_keeps_every_filter(groups: int) -> None:
    model = ftn.attach(_net(), "ftn", groups=groups)
    result = filter_analysis(model)
    assert result["mae"] == pytest.approx(0.0, abs=1e-12)
    assert result["cosine"] == pytest.approx(1.0, abs=1e-12)
    assert result["layers"] == len(_convs(_net()))
    assert result["filters"] == sum(m.out_channels for m in _net().modules() if isinstance(m, nn.Conv2d))


def test_dni_perturbation_gives_the_hand_computed_distance() -> None:
    model = ftn.attach(_net(), "dni")
    gen = torch.Generator().manual_seed(3)
    deltas, level1 = {}, {}
    with torch.no_grad():
        for name, layer in model.tunable_layers():
            if isinstance(layer.base, nn.Conv2d):
                delta = 0.01 * torch.randn(layer.level2["weight"].shape, generator=gen)
                layer.level2["weight"].add_(delta)
                deltas[name] = delta.double()
                level1[name] = layer.base.weight.detach().double()
    expected_mae = sum(float(d.abs().sum()) for d in deltas.values()) / sum(d.numel() for d in deltas.values())
    cosines = []
    for name, delta in deltas.items():
        f1 = level1[name].reshape(delta.shape[0], -1).numpy()
        f2 = f1 + delta.reshape(delta.shape[0], -1).numpy()
        cosines += [float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b))) for a, b in zip(f1, f2)]
    result = filter_analysis(model)
    assert result["mae"] == pytest.approx(expected_mae, rel=1e-6)
    assert result["cosine"] == pytest.approx(float(np.mean(cosines)), rel=1e-9)
    assert result["layers"] == len(deltas)
    assert result["cosine"] < 1.0


def test_only_the_tuned_convs_are_compared() -> None:
    net = _net()
    last = _convs(net)[-1]
    model = ftn.attach(net, "ftn", groups=1, exclude=[last])
    level1, level2 = level_kernels(model)
    assert last not in level1 and set(level1) == set(level2) == set(_convs(_net())[:-1])


def test_kernel_distances_by_hand() -> None:
    a = {"c": torch.tensor([[[[1.0, 0.0]]], [[[0.0, 2.0]]]])}  # two filters of one layer
    b = {"c": torch.tensor([[[[1.0, 1.0]]], [[[0.0, -2.0]]]])}
    assert kernel_mae(a, b) == pytest.approx((0 + 1 + 0 + 4) / 4)
    assert filter_cosine_similarity(a, b) == pytest.approx((1 / math.sqrt(2) + -1.0) / 2)
    zero = {"c": torch.zeros(1, 1, 1, 2)}
    assert filter_cosine_similarity(zero, zero) == 1.0
    with pytest.raises(ValueError, match="different convs"):
        kernel_mae(a, {"d": a["c"]})
    with pytest.raises(ValueError, match="shape"):
        kernel_mae(a, {"c": torch.zeros(1, 1, 1, 2)})


def test_methods_without_export_are_refused() -> None:
    model = ftn.attach(_net(), "cfsnet")
    with pytest.raises(ftn.ExportNotSupported):
        filter_analysis(model)


# -- colour drift and smoothness -------------------------------------------------------------------


class _Offset(nn.Module):
    """A "model" whose output is the input plus alpha times a per-channel offset."""

    def __init__(self, offset: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("offset", offset.view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor, alpha: float = 0.0) -> torch.Tensor:
        return x + alpha * self.offset


def test_colour_shift_of_a_constant_offset_is_the_offset() -> None:
    gen = torch.Generator().manual_seed(0)
    clean = (torch.randint(60, 180, (2, 3, 24, 20), generator=gen).float() / 255.0)  # on the 8-bit grid
    offset = torch.tensor([10.0, -5.0, 3.0]) / 255.0
    path = alpha_path(_Offset(offset), clean, clean, [0.0, 1.0], keep_outputs=True)
    assert [p["alpha"] for p in path] == [0.0, 1.0]
    assert path[0]["colour_shift"] == pytest.approx([0.0, 0.0, 0.0], abs=1e-9)
    assert path[0]["rmse"] == 0.0 and path[0]["ssim"] == pytest.approx(1.0) and path[0]["psnr"] == math.inf
    assert path[1]["colour_shift"] == pytest.approx([10.0, -5.0, 3.0], abs=1e-9)
    assert path[1]["colour_shift_norm"] == pytest.approx(math.sqrt(100 + 25 + 9))
    assert path[1]["rmse"] == pytest.approx(math.sqrt((100 + 25 + 9) / 3))
    assert path[1]["psnr"] == pytest.approx(psnr(clean[0] + offset.view(-1, 1, 1), clean[0]))
    assert path[1]["ssim"] == pytest.approx(float(np.mean([ssim(c + offset.view(-1, 1, 1), c) for c in clean])))
    assert len(path[1]["outputs"]) == 2 and torch.allclose(path[1]["outputs"][0], clean[0] + offset.view(-1, 1, 1))


def test_alpha_path_on_a_tunable_model_starts_at_the_base() -> None:
    net = _net().eval()
    gen = torch.Generator().manual_seed(1)
    clean = torch.rand(3, 20, 20, generator=gen)
    noisy = clean + 0.1 * torch.randn(3, 20, 20, generator=gen)
    with torch.no_grad():
        base_out = net(noisy[None])[0].clamp(0, 1)
    model = ftn.attach(net, "ftn", groups=4)
    path = alpha_path(model, noisy, clean, [0.0, 0.5, 1.0])
    assert path[0]["psnr"] == pytest.approx(psnr(base_out, clean))
    assert path[0]["psnr"] == pytest.approx(path[2]["psnr"])  # FTN(f) == f at initialisation


def test_alpha_path_checks_its_inputs() -> None:
    with pytest.raises(ValueError, match="as many"):
        alpha_path(_Offset(torch.zeros(3)), torch.rand(2, 3, 16, 16), torch.rand(1, 3, 16, 16), [0.0])


def test_largest_step_and_drift() -> None:
    assert largest_step([0.0, 1.0, 3.0, 2.5]) == pytest.approx(2.0)
    assert largest_step([[0, 0], [3, 4], [3, 4]]) == pytest.approx(5.0)
    assert largest_step([1.0]) == 0.0 and largest_step([]) == 0.0
    assert largest_drift([1.0, 1.5, 0.0, 1.2]) == pytest.approx(1.0)
    assert largest_drift([[1, 1], [1, 2], [4, 5]]) == pytest.approx(5.0)


# -- interpretability ------------------------------------------------------------------------------


def test_linear_alpha_in_both_directions() -> None:
    assert linear_alpha(40, 20, 80) == pytest.approx(1 / 3)
    assert linear_alpha(60, 20, 80) == pytest.approx(2 / 3)
    assert linear_alpha(30, 40, 10) == pytest.approx(1 / 3)  # JPEG quality 40 -> 10
    assert linear_alpha(20, 20, 80) == 0.0 and linear_alpha(80, 20, 80) == 1.0
    assert alpha_error(0.5, 40, 20, 80) == pytest.approx(0.5 - 1 / 3)
    with pytest.raises(ValueError):
        linear_alpha(30, 20, 20)


def test_best_alpha() -> None:
    assert best_alpha([0.0, 0.5, 1.0], [1.0, 3.0, 2.0]) == (0.5, 3.0)
    with pytest.raises(ValueError):
        best_alpha([0.0], [])
