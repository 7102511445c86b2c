"""Property-based tests (hypothesis): random shapes, dtypes and alphas thrown at attach / set_alpha /
export, checking that the invariants of the core hold for all of them (convs, and a linear or transposed
conv layer in the middle), and that bad alphas are refused.

Invariants (DESIGN.md, Testing): alpha = 0 reproduces the base network; export(alpha) equals the
tunable model at alpha; a constant per-pixel map equals the scalar; a per-sample alpha equals a loop
over the samples; the base parameters are never changed by setting alpha.
"""

from __future__ import annotations

import copy
import math

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

import ftn

METHOD_OPTIONS = {
    "ftn": st.fixed_dictionaries({"groups": st.sampled_from([1, 2, 4, 16])}),
    "dni": st.just({}),
    "adafm": st.fixed_dictionaries({"kernel_size": st.sampled_from([1, 3, 5])}),
}


class Net(nn.Module):
    """Two convs with a ReLU between, of drawn widths and kernel sizes, and optionally a middle layer
    of another kind: an ``nn.Linear`` on channel-last maps, or a (grouped) stride-2 ``nn.ConvTranspose2d``."""

    def __init__(self, cin: int, mid: int, cout: int, k1: int, k2: int, middle: str = "none", groups: int = 1) -> None:
        super().__init__()
        self.middle = middle
        self.conv1 = nn.Conv2d(cin, mid, k1, padding=k1 // 2)
        if middle == "linear":
            self.mid = nn.Linear(mid, mid)
        elif middle == "transpose":
            self.mid = nn.ConvTranspose2d(mid, mid, 3, stride=2, padding=1, groups=groups)
        self.conv2 = nn.Conv2d(mid, cout, k2, padding=k2 // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.conv1(x))
        if self.middle == "linear":
            y = torch.relu(self.mid(y.permute(0, 2, 3, 1))).permute(0, 3, 1, 2)
        elif self.middle == "transpose":
            y = torch.relu(self.mid(y, output_size=(2 * y.shape[-2], 2 * y.shape[-1])))
        return self.conv2(y)


@st.composite
def cases(draw):
    method = draw(st.sampled_from(sorted(METHOD_OPTIONS)))
    options = draw(METHOD_OPTIONS[method])
    dtype = draw(st.sampled_from([torch.float32, torch.float64]))
    shape = dict(cin=draw(st.integers(1, 4)), mid=draw(st.integers(1, 12)), cout=draw(st.integers(1, 4)),
                 k1=draw(st.sampled_from([1, 3, 5])), k2=draw(st.sampled_from([1, 3])),
                 middle=draw(st.sampled_from(["none", "linear", "transpose"])))
    shape["groups"] = draw(st.sampled_from([g for g in (1, 2, 3, 4) if shape["mid"] % g == 0]))
    if shape["middle"] == "linear" and method == "adafm":
        options = {"kernel_size": 1}  # AdaFM's spatial filters refuse linear layers (tested in test_methods)
    batch, height, width = draw(st.integers(1, 3)), draw(st.integers(1, 9)), draw(st.integers(1, 9))
    alpha = draw(st.floats(0.0, 1.0, allow_nan=False))
    seed = draw(st.integers(0, 2**16))
    return method, options, dtype, shape, (batch, height, width), alpha, seed


def _build(method, options, dtype, shape, seed):
    torch.manual_seed(seed)
    base = Net(**shape).to(dtype)
    reference = copy.deepcopy(base)
    model = ftn.attach(base, method, **options).to(dtype)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():  # a trained-looking tuner: alpha must matter
        for p in model.tuner_parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return reference.eval(), model.eval()


def _tol(dtype):
    return dict(atol=1e-5, rtol=1e-4) if dtype == torch.float32 else dict(atol=1e-10, rtol=1e-9)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases())
def test_core_invariants_hold_for_random_networks(case):
    method, options, dtype, shape, (batch, height, width), alpha, seed = case
    reference, model = _build(method, options, dtype, shape, seed)
    x = torch.rand(batch, shape["cin"], height, width, generator=torch.Generator().manual_seed(seed), dtype=dtype)
    with torch.no_grad():
        # alpha 0 is the base network exactly
        torch.testing.assert_close(model(x, alpha=0.0), reference(x), atol=0, rtol=0)
        at_alpha = model(x, alpha=alpha)
        # export at alpha is a plain network with the same output (for the methods that can)
        if model.capabilities.exact_export:
            plain = model.export(alpha)
            assert not any(isinstance(m, ftn.methods.TunableLayer) for m in plain.modules())
            torch.testing.assert_close(plain(x), at_alpha, **_tol(dtype))
        # a constant per-pixel map equals the scalar
        if model.capabilities.per_pixel:
            constant = torch.full((batch, 1, height, width), alpha, dtype=dtype)
            torch.testing.assert_close(model(x, alpha=constant), at_alpha, **_tol(dtype))
        # a per-sample alpha equals a loop over the samples
        if model.capabilities.per_sample:
            alphas = torch.linspace(0, 1, batch, dtype=dtype) if batch > 1 else torch.tensor([alpha], dtype=dtype)
            together = model(x, alpha=alphas)
            for i in range(batch):
                torch.testing.assert_close(together[i:i + 1], model(x[i:i + 1], alpha=float(alphas[i])), **_tol(dtype))
    # setting alpha (and running, and exporting) never touches the base network: alpha 0 is still it
    model.set_alpha(alpha)
    with torch.no_grad():
        model(x)
        torch.testing.assert_close(model(x, alpha=0.0), reference(x), atol=0, rtol=0)


BAD_ALPHAS = st.one_of(
    st.just(math.nan), st.just(math.inf), st.just(-math.inf),
    st.floats(-1e6, -1e-6, allow_nan=False), st.floats(1.000001, 1e6, allow_nan=False),
)


@settings(max_examples=40, deadline=None)
@given(method=st.sampled_from(sorted(METHOD_OPTIONS)), alpha=BAD_ALPHAS)
def test_alphas_outside_the_range_are_refused_without_extrapolation(method, alpha):
    model = ftn.attach(Net(3, 4, 3, 3, 3), method)
    with pytest.raises(ValueError):
        model.set_alpha(alpha)
    with pytest.raises(ValueError):
        model(torch.rand(1, 3, 4, 4), alpha=alpha)
    if model.capabilities.exact_export:
        with pytest.raises(ValueError):
            model.export(alpha)
    if math.isfinite(alpha):  # the option lets finite alphas through, never NaN or infinity
        ftn.attach(Net(3, 4, 3, 3, 3), method, allow_extrapolation=True).set_alpha(alpha)


@settings(max_examples=30, deadline=None)
@given(map_shape=st.tuples(st.integers(1, 3), st.integers(1, 3), st.integers(1, 9), st.integers(1, 9)),
       method=st.sampled_from(sorted(METHOD_OPTIONS)))
def test_maps_of_a_wrong_shape_are_refused_or_fit(map_shape, method):
    """An alpha map must be (B, 1, H, W) with B the batch: other shapes raise ValueError, never crash."""
    model = ftn.attach(Net(3, 4, 3, 3, 3), method).eval()
    x = torch.rand(2, 3, 6, 7)
    amap = torch.rand(*map_shape)
    try:
        with torch.no_grad():
            y = model(x, alpha=amap)
    except ValueError:
        return
    assert y.shape == (2, 3, 6, 7) and torch.isfinite(y).all()
