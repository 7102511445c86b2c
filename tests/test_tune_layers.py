"""Tuners on nn.ConvTranspose2d and nn.Linear layers (tuned by default since the methods learned them):
the ONNX graph against PyTorch in onnxruntime, and the complexity counts (``ftn.eval.complexity``).

The net is tiny on purpose: a stride-2 conv, a stride-2 transposed conv, a Linear applied channel-last
(as transformer restorers apply theirs) and a last conv, with an image skip.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn as nn

import ftn
from ftn.archs._common import pad_to_multiple
from ftn.eval.complexity import aten_ops, count_macs

pytest.importorskip("onnx", reason="ONNX export is an optional extra: pip install -e .[export]")
pytest.importorskip("onnxruntime", reason="the ONNX check needs onnxruntime")

from ftn.export import check_onnx, export_onnx  # noqa: E402


class Mixed(nn.Module):
    """Conv2d (stride 2) -> ConvTranspose2d (stride 2) -> Linear on (B, H, W, C) -> Conv2d, plus the input
    (padded to even sides and cropped back)."""

    def __init__(self, c: int = 6) -> None:
        super().__init__()
        self.down = nn.Conv2d(3, c, 3, stride=2, padding=1)
        self.up = nn.ConvTranspose2d(c, c, 4, stride=2, padding=1)
        self.mix = nn.Linear(c, c)
        self.out = nn.Conv2d(c, 3, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        x = pad_to_multiple(x, 2)  # odd sides: as ftn's architectures do (the ONNX export traces an odd size)
        y = torch.relu(self.up(torch.relu(self.down(x))))
        y = self.mix(y.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        return (x + self.out(torch.relu(y)))[..., :h, :w]


#: (method, options): the three methods with an exact export to a plain network at a fixed alpha.
METHODS = [("ftn", {"groups": 1}), ("ftn", {"groups": 2, "depth": 3}), ("dni", {}), ("adafm", {"kernel_size": 1})]


def _tuned(method: str, options: dict) -> tuple[nn.Module, ftn.TunableModel]:
    torch.manual_seed(0)
    base = Mixed().eval()
    model = ftn.attach(copy.deepcopy(base), method, **options).eval()
    with torch.no_grad():  # away from the identity, as after training
        for p in model.tuner_parameters():
            p.add_(0.05 * torch.randn_like(p))
    return base, model


@pytest.mark.parametrize(("method", "options"), METHODS)
def test_every_layer_kind_is_tuned(method: str, options: dict) -> None:
    _, model = _tuned(method, options)
    assert set(model.target_names) == {"down", "up", "mix", "out"}


@pytest.mark.parametrize(("method", "options"), METHODS)
def test_onnx_matches_pytorch(tmp_path, method: str, options: dict) -> None:
    import onnxruntime as ort

    base, model = _tuned(method, options)
    path = tmp_path / "mixed.onnx"
    export_onnx(model, path)
    assert check_onnx(path, model) < 1e-5  # three alphas, a size other than the traced one
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = torch.rand(1, 3, 18, 26, generator=torch.Generator().manual_seed(1))
    for alpha in (0.0, 0.3, 1.0):
        got = session.run(None, {"image": x.numpy(), "alpha": np.array([alpha], dtype=np.float32)})[0]
        with torch.no_grad():
            want = model(x, alpha=alpha)
            assert np.abs(got - want.numpy()).max() < 1e-5, alpha
            if alpha == 0.0:
                assert np.abs(got - base(x).numpy()).max() < 1e-5  # the graph at alpha 0 is the base
            plain = model.export(alpha)  # and each alpha is a plain network of the same layers
            assert torch.allclose(plain(x), want, atol=1e-5)


def _ftn_macs_by_hand(net: nn.Module) -> int:
    """FTN (G=1, depth 2) per layer: two 1x1 convs of C_out x C_out over the kernel's C_in * k * k
    positions; a transposed conv's weight is regrouped to (C_out, C_in, k, k), a Linear's is (out, in, 1, 1)."""
    total = 0
    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            c_out, positions = m.out_channels, m.in_channels * m.kernel_size[0] * m.kernel_size[1]
        elif isinstance(m, nn.ConvTranspose2d):
            c_out, positions = m.out_channels, m.in_channels * m.kernel_size[0] * m.kernel_size[1]
        elif isinstance(m, nn.Linear):
            c_out, positions = m.out_features, m.in_features
        else:
            continue
        total += 2 * positions * c_out * c_out
    return total


@pytest.mark.parametrize(("method", "options"), METHODS)
def test_complexity_a_fixed_alpha_costs_what_the_base_costs(method: str, options: dict) -> None:
    base, model = _tuned(method, options)
    x = torch.rand(1, 3, 16, 16)
    plain_macs = count_macs(base, x)
    by_hand = (3 * 6 * 9) * 64 + (6 * 6 * 16) * 64 + 6 * 6 * 256 + (6 * 3 * 9) * 256  # down, up, mix, out
    assert plain_macs == by_hand
    model.set_alpha(0.5)
    first = count_macs(model, x)  # computes the blended kernels
    fast = count_macs(model, x)  # reuses them
    assert fast == plain_macs
    if method == "ftn" and options == {"groups": 1}:
        assert first - plain_macs == _ftn_macs_by_hand(base)
    run = lambda inp: model(inp, alpha=0.5)  # noqa: E731
    with torch.inference_mode():
        run(x)
    assert aten_ops(run, x) == aten_ops(base, x)  # operator for operator, the plain network's work
