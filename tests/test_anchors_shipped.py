"""benchmarks/anchors_shipped.py's ``tuner_alone``: one tuner of a multi-anchor model (from the base), taken back
out, is exactly the two-anchor model it came from; a chained axis's inner tuners are refused."""

from __future__ import annotations

import copy

import pytest
import torch

import ftn
from benchmarks.anchors_shipped import tuner_alone
from ftn.tuning.grow import as_axes, with_anchor


def _tuned(base: torch.nn.Module, seed: int, level: float = 50) -> ftn.TunableModel:
    model = ftn.attach(copy.deepcopy(base), "ftn", groups=2)
    model.metadata = {"task": "denoise", "levels": [{"sigma": 20}, {"sigma": level}]}
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.tuner_parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=generator))
    return model.eval()


@pytest.mark.parametrize("anchor", [1, 2])
def test_a_tuner_taken_out_is_the_two_anchor_model(anchor: int) -> None:
    base = ftn.build_arch("resunet", size="mini", channels=4, blocks=1, scales=2, image_skip=True).eval()
    inner, outer = _tuned(base, 1), _tuned(base, 2, level=80)
    model = with_anchor(as_axes(inner, chained=False), "sigma", 80.0).import_tunable(outer, "sigma", anchor=2).eval()
    alone = tuner_alone(model, "sigma", anchor)
    reference = inner if anchor == 1 else outer
    x = torch.rand(1, 3, 16, 20, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        for alpha in (0.0, 0.4, 1.0):
            torch.testing.assert_close(alone(x, alpha=alpha), reference(x, alpha=alpha), rtol=1e-5, atol=1e-6)


def test_a_chained_axis_is_refused() -> None:
    base = ftn.build_arch("resunet", size="mini", channels=4, blocks=1, scales=2, image_skip=True).eval()
    model = with_anchor(as_axes(_tuned(base, 1), chained=True), "sigma", 80.0)
    with pytest.raises(ValueError, match="chained"):
        tuner_alone(model, "sigma", 2)
