"""``ftn.tuning.grow.with_corners_from``: corners trained in parallel from one file join into one model that
computes, at every setting, what the file holding each corner computes; files that differ anywhere but in
their new corners are refused in one line."""

from __future__ import annotations

import pytest
import torch

import ftn
from ftn.methods.axes import AxesModel, AxisSpec, attach_axes
from ftn.tuning.grow import with_corner, with_corners_from

AXES = [AxisSpec("sigma", 3, levels=(5, 25, 50)), AxisSpec("quality", 3, levels=(90, 50, 10))]


def _moved(model: AxesModel, seed: int, corner: dict | None = None) -> AxesModel:
    """``model``'s tuners (or only ``corner``'s) moved off the identity by a seeded step."""
    gen = torch.Generator().manual_seed(seed)
    params = model.tuner_parameters(corner=corner) if corner is not None else model.tuner_parameters()
    with torch.no_grad():
        for p in params:
            p.add_(0.05 * torch.randn(p.shape, generator=gen))
    return model.eval()


@pytest.fixture(scope="module")
def start() -> AxesModel:
    """The shared file: axes trained, one corner (sigma 2, quality 2)."""
    torch.manual_seed(0)
    net = ftn.build_arch("adafm_net", size="mini", channels=8, blocks=1, image_skip=True)
    model = _moved(attach_axes(net, "ftn", AXES, corners=[{"sigma": 2, "quality": 2}], groups=4), 1)
    return model


def _trained(start: AxesModel, corner: dict, seed: int) -> AxesModel:
    return _moved(with_corner(start, corner), seed, corner)


def test_joined_corners_compute_what_each_file_computes(start: AxesModel) -> None:
    a, b = _trained(start, {"sigma": 1, "quality": 1}, 2), _trained(start, {"sigma": 2, "quality": 1}, 3)
    joined = with_corners_from(with_corners_from(start, a), b)
    assert sorted(tuple(sorted(dict(c).items())) for c in joined.corners) == sorted(
        tuple(sorted(c.items())) for c in ({"sigma": 2, "quality": 2}, {"sigma": 1, "quality": 1}, {"sigma": 2, "quality": 1}))
    x = torch.rand(1, 3, 16, 20, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        for setting, reference in [({"sigma": 1, "quality": 1}, a), ({"sigma": 2, "quality": 1}, b),
                                   ({"sigma": 2, "quality": 2}, start), ({"sigma": 0.5, "quality": 0}, start)]:
            torch.testing.assert_close(joined(x, alpha=setting), reference(x, alpha=setting), rtol=1e-5, atol=1e-6)
        # between the two new corners both count: the joined model differs from either file alone
        mid = {"sigma": 1.5, "quality": 1}
        assert not torch.allclose(joined(x, alpha=mid), a(x, alpha=mid))
        assert not torch.allclose(joined(x, alpha=mid), b(x, alpha=mid))


@pytest.mark.parametrize("case", ["another axis tuner", "a shared corner retrained", "other axes"])
def test_files_that_differ_beyond_new_corners_are_refused(start: AxesModel, case: str) -> None:
    other = _trained(start, {"sigma": 1, "quality": 1}, 2)
    if case == "another axis tuner":
        _moved(other, 5)  # every tuner moved: not trained from the same file
        match = "differ at"
    elif case == "a shared corner retrained":
        _moved(other, 6, {"sigma": 2, "quality": 2})
        match = "differ at"
    else:
        net = ftn.build_arch("adafm_net", size="mini", channels=8, blocks=1, image_skip=True)
        other = attach_axes(net, "ftn", [AxisSpec("sigma", 2, levels=(5, 50))], groups=4)
        match = "axes differ"
    with pytest.raises(ValueError, match=match):
        with_corners_from(start, other)
