"""benchmarks/quality.py's best-alpha search: it finds the peak of a single-peaked PSNR curve over alpha in
[0, K] (K + 1 anchors), inside a segment, past an anchor, and at either end, without leaving the range."""

from __future__ import annotations

import pytest

from benchmarks.quality import search_best_alpha


class Curve:
    """A stand-in for ``LevelSearch``: a concave PSNR curve over [0, top], each alpha measured once."""

    def __init__(self, peak: float, top: float) -> None:
        self.peak, self.top = peak, top
        self.values: dict[float, float] = {}

    def __call__(self, alpha: float) -> float:
        alpha = round(min(self.top, max(0.0, alpha)), 3)
        self.values.setdefault(alpha, 30.0 - (alpha - self.peak) ** 2)
        return self.values[alpha]

    def best(self) -> tuple[float, float]:
        alpha = max(self.values, key=self.values.__getitem__)
        return alpha, self.values[alpha]


@pytest.mark.parametrize(
    ("peak", "top", "start"),
    [
        (0.37, 1.0, 0.5),   # two anchors, inside
        (0.0, 1.0, 0.5),    # at alpha 0
        (1.0, 1.0, 0.2),    # at alpha 1
        (1.62, 2.0, 1.0),   # three anchors, second segment
        (1.0, 2.0, 0.4),    # at the middle anchor, reached from the first segment
        (2.0, 2.0, 1.5),    # at the far end of [0, 2]
        (3.4, 4.0, 0.5),    # five anchors, a long walk
    ],
)
def test_search_finds_the_peak_within_range(peak: float, top: float, start: float) -> None:
    curve = Curve(peak, top)
    alpha, value = search_best_alpha(curve, start)
    assert alpha == pytest.approx(peak, abs=0.01)
    assert value == pytest.approx(30.0, abs=1e-3)
    assert all(0.0 <= a <= top for a in curve.values)
