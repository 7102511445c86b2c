"""Multi-axis, multi-anchor models (ftn.methods.axes): the invariants of Eq. (A1), on tiny nets (CPU)."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn as nn

import ftn
import ftn.axes_io
from ftn.io import read_metadata
from ftn.levels import Levels
from ftn.methods._kernels import from_out_in, to_out_in
from ftn.methods.axes import AxesModel, AxisSpec, attach_axes, merge_axes
from ftn.methods.base import TunableLayer
from ftn.methods.ftn import FilterTransition


class TinyNet(nn.Module):
    """Three convs (one stride 2, so maps are resized), a PReLU and a GroupNorm (DNI's non-conv tensors)."""

    def __init__(self, c: int = 8) -> None:
        super().__init__()
        self.head = nn.Conv2d(3, c, 3, padding=1)
        self.act = nn.PReLU(c)
        self.norm = nn.GroupNorm(2, c)
        self.down = nn.Conv2d(c, c, 3, stride=2, padding=1)
        self.up = nn.ConvTranspose2d(c, c, 2, stride=2)
        self.tail = nn.Conv2d(c, 3, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.tail(self.up(self.down(self.norm(self.act(self.head(x))))))


class TokenNet(nn.Module):
    """A linear layer on token sequences (B, N, C): no grid for a per-pixel map."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x)


METHODS = [("ftn", {}), ("ftn", {"groups": 4}), ("dni", {})]
METHOD_IDS = ["ftn", "ftn-gc4", "dni"]
# name -> (axes, corners): two two-anchor axes; a four-anchor axis from base / chained, with a corner
LAYOUTS = {
    "two": ([AxisSpec("sigma"), AxisSpec("quality")], []),
    "multi": ([AxisSpec("sigma", 4), AxisSpec("quality")], [{"sigma": 1, "quality": 1}]),
    "chained": ([AxisSpec("sigma", 4, chained=True), AxisSpec("quality")], [{"sigma": 2, "quality": 1}]),
}


def _perturb(params, scale: float = 0.05, seed: int = 1) -> None:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in params:
            p.add_(scale * torch.randn(p.shape, generator=gen))


def _make(method: str, options: dict, layout: str, seed: int = 0) -> tuple[nn.Module, AxesModel]:
    torch.manual_seed(seed)
    base = TinyNet().eval()
    axes, corners = LAYOUTS[layout]
    model = attach_axes(copy.deepcopy(base), method, axes, corners=corners, **options).eval()
    _perturb(model.tuner_parameters())
    return base, model


def _x(batch: int = 2) -> torch.Tensor:
    return torch.rand(batch, 3, 16, 16, generator=torch.Generator().manual_seed(3))


def _full(value: float, batch: int = 2) -> torch.Tensor:
    return torch.full((batch, 1, 16, 16), value)


CASES = [(m, o, lay) for (m, o) in METHODS for lay in LAYOUTS]
CASE_IDS = [f"{i}-{lay}" for i in METHOD_IDS for lay in LAYOUTS]


ZEROS = {
    "empty": {},
    "named": {"sigma": 0.0},
    "list": [0, 0],
    "vector": torch.zeros(2),
    "per-sample": torch.zeros(2, 2),
    "maps": {"sigma": _full(0.0), "quality": _full(0.0)},
}


@pytest.mark.parametrize("method,options,layout", CASES, ids=CASE_IDS)
@pytest.mark.parametrize("zero", list(ZEROS))
def test_zero_is_the_base_bit_for_bit(method, options, layout, zero) -> None:
    base, model = _make(method, options, layout)
    x, setting = _x(), ZEROS[zero]
    with torch.no_grad():
        assert torch.equal(model(x, alpha=setting), base(x))


def _reference_anchor(model: AxesModel, method: str, axis: AxisSpec, k: int) -> nn.Module:
    """A plain copy of the base whose layers hold anchor k's tensors, computed from the tuners directly."""
    plain = model.export({})
    for name, layer in model.axes_layers():
        module = plain.get_submodule(name)
        with torch.no_grad():
            if method == "ftn":
                weight = layer.base.weight
                for j in range(1, k + 1) if axis.chained else [k]:
                    tuner = layer.tuners[axis.name][str(j)]
                    assert isinstance(tuner, FilterTransition)
                    start = weight if axis.chained else layer.base.weight
                    weight = from_out_in(layer.base, tuner(to_out_in(layer.base, start)))
                module.weight.copy_(weight)
            else:
                for tensor_name, value in layer.tuners[axis.name][str(k)].tensors().items():
                    getattr(module, tensor_name).copy_(value)
    return plain


@pytest.mark.parametrize("method,options,layout", CASES, ids=CASE_IDS)
def test_on_anchor_k_is_that_anchors_own_kernel(method, options, layout) -> None:
    _, model = _make(method, options, layout)
    x = _x()
    with torch.no_grad():
        for axis in model.axes:
            for k in range(1, axis.anchors):
                expected = _reference_anchor(model, method, axis, k)(x)
                assert torch.allclose(model(x, alpha={axis.name: k}), expected, atol=1e-6), (axis.name, k)


@pytest.mark.parametrize("method,options", METHODS, ids=METHOD_IDS)
@pytest.mark.parametrize("layout", ["multi", "chained"])
@pytest.mark.parametrize("anchor", [1, 2])
@pytest.mark.parametrize("kind", ["number", "map"])
def test_continuous_across_an_anchor(method, options, layout, anchor, kind) -> None:
    _, model = _make(method, options, layout)
    x, eps = _x(), 1e-4
    with torch.no_grad():
        left, mid, right = (
            model(x, alpha={"sigma": a if kind == "number" else _full(a), "quality": 0.5})
            for a in (anchor - eps, float(anchor), anchor + eps)
        )
        far = model(x, alpha={"sigma": anchor + 0.5, "quality": 0.5})
    assert (far - mid).abs().max() > 1e-3  # the anchors differ, so a jump would show
    assert (left - mid).abs().max() < 2e-4 and (right - mid).abs().max() < 2e-4


SETTINGS = [
    {"sigma": 1.3, "quality": 0.6},
    {"sigma": 1.0, "quality": 1.0},
    {"sigma": 2.5, "quality": 0.25},
    {"sigma": 0.0, "quality": 0.4},
    {"sigma": 0.7},
]


@pytest.mark.parametrize("method,options,layout", CASES, ids=CASE_IDS)
@pytest.mark.parametrize("setting", SETTINGS, ids=lambda s: ",".join(f"{k}{v}" for k, v in s.items()))
def test_fixed_setting_equals_constant_maps(method, options, layout, setting) -> None:
    _, model = _make(method, options, layout)
    if max(setting.values()) > min(a.segments for a in model.axes) and layout == "two":
        setting = {k: min(v, 1.0) for k, v in setting.items()}
    x = _x()
    with torch.no_grad():
        fixed = model(x, alpha=setting)
        maps = model(x, alpha={k: _full(v) for k, v in setting.items()})
        mixed = model(x, alpha={**setting, "sigma": _full(setting["sigma"])})
    assert torch.allclose(fixed, maps, atol=1e-5)
    assert torch.allclose(fixed, mixed, atol=1e-5)


@pytest.mark.parametrize("method,options,layout", CASES, ids=CASE_IDS)
def test_export_equals_the_model_at_that_setting(method, options, layout) -> None:
    base, model = _make(method, options, layout)
    x = _x()
    for setting in ({"sigma": 1.0, "quality": 1.0}, {"sigma": 0.8, "quality": 0.3}, torch.tensor([1.0, 0.6])):
        plain = model.export(setting)
        assert type(plain) is TinyNet and not any(isinstance(m, TunableLayer) for m in plain.modules())
        assert plain.state_dict().keys() == base.state_dict().keys()
        with torch.no_grad():
            assert torch.allclose(plain(x), model(x, alpha=setting), atol=1e-6)


@pytest.mark.parametrize("method,options,layout", CASES, ids=CASE_IDS)
def test_per_sample_equals_a_loop(method, options, layout) -> None:
    _, model = _make(method, options, layout)
    x = _x(3)
    settings = torch.tensor([[0.0, 0.0], [1.0, 0.5], [0.3, 1.0]])
    with torch.no_grad():
        batched = model(x, alpha=settings)
        looped = torch.cat([model(x[i : i + 1], alpha=settings[i]) for i in range(3)])
    assert torch.allclose(batched, looped, atol=1e-5)


def test_per_pixel_cost_is_one_conv_plus_one_per_active_term(monkeypatch) -> None:
    calls = {"conv": 0, "ftn": 0}
    conv_forward, ftn_forward = nn.Conv2d._conv_forward, FilterTransition.forward

    def counting_conv(self, *args):
        calls["conv"] += id(self) in images  # the network's convs on images, not the FTNs' on kernels
        return conv_forward(self, *args)

    def counting_ftn(self, kernel):
        calls["ftn"] += 1
        return ftn_forward(self, kernel)

    monkeypatch.setattr(nn.Conv2d, "_conv_forward", counting_conv)
    monkeypatch.setattr(FilterTransition, "forward", counting_ftn)
    torch.manual_seed(0)
    model = attach_axes(TinyNet(), "ftn", [AxisSpec("sigma", 4), AxisSpec("quality")], targets=[nn.Conv2d]).eval()
    model.add_corner({"sigma": 1, "quality": 1})
    images = {id(layer.base) for _, layer in model.axes_layers()}
    convs, x = len(images), _x()
    assert convs == 3
    ramp = torch.linspace(0.2, 1.6, 16).view(1, 1, 1, 16).expand(2, 1, 16, 16)  # touches anchors 1 and 2
    cases = [  # (setting, convolutions per layer)
        ({"sigma": 1.5, "quality": 0.5}, 1),  # numbers: one blended kernel, the plain network's cost
        ({"sigma": _full(0.5), "quality": _full(0.5)}, 1 + 2 + 1),  # two deltas and the corner
        ({"sigma": ramp, "quality": 0.0}, 1 + 2),  # anchors 1 and 2 of sigma; the corner's weight is 0
        ({"sigma": _full(3.0), "quality": 0.5}, 1 + 1),  # sigma = 3 exactly: anchor 3 alone
    ]
    with torch.no_grad():
        for setting, per_layer in cases:
            calls["conv"] = 0
            model(x, alpha=setting)
            assert calls["conv"] == convs * per_layer, setting
        # A fixed setting computes its blended kernels once, then reuses them.
        model.set_alpha({"sigma": 2.5, "quality": 1.0})
        model(x)
        calls["ftn"] = 0
        model(x)
        model(x[:1])
        assert calls["ftn"] == 0


def _refusals():
    return [
        (lambda m: m.set_alpha({"noise": 0.5}), ValueError, "no axis 'noise'; its axes are sigma, quality"),
        (lambda m: m.set_alpha({"sigma": 3.5}), ValueError, r"sigma = 3.5 is outside its range \[0, 3\]"),
        (lambda m: m.set_alpha({"quality": -0.1}), ValueError, "outside its range"),
        (lambda m: m.set_alpha({"sigma": torch.linspace(0, 4, 16).view(1, 1, 4, 4)}), ValueError,
         r"sigma has values in \[0, 4\], outside its range \[0, 3\]"),
        (lambda m: m.set_alpha({"sigma": float("nan")}), ValueError, "NaN"),
        (lambda m: m.set_alpha(torch.zeros(3)), ValueError, r"is \(2,\), per sample \(B, 2\)"),
        (lambda m: m.set_alpha(torch.zeros(2, 3)), ValueError, "got shape"),
        (lambda m: m.set_alpha([0.1]), ValueError, r"needs 2 values \(sigma, quality\)"),
        (lambda m: m.set_alpha(0.5), ValueError, "give a value per axis"),
        (lambda m: m.set_alpha({"sigma": torch.zeros(1, 2, 8, 8)}), ValueError, "one channel"),
        (lambda m: m.set_alpha({"sigma": "high"}), TypeError, "alpha must be a number"),
        (lambda m: m.export({"sigma": _full(0.5)}), TypeError, "maps cannot be baked"),
        (lambda m: m.trainable(axis="sigma", anchor=0), ValueError, r"anchors 1 \.\.\. 3 to train"),
        (lambda m: m.trainable(axis="sigma", anchor=4), ValueError, "to train"),
        (lambda m: m.trainable(corner={"sigma": 2, "quality": 1}), ValueError, "no corner sigma=2,quality=1"),
        (lambda m: m.add_corner({"sigma": 1}), ValueError, "two or more axes"),
        (lambda m: m.add_corner({"sigma": 1, "noise": 1}), ValueError, "no axis 'noise'"),
        (lambda m: m.add_corner({"sigma": 4, "quality": 1}), ValueError, r"anchor 1 \.\.\. 3"),
        (lambda m: m.add_corner({"sigma": 1, "quality": 1}), ValueError, "already has corner"),
        (lambda m: ftn.attach(m.model, "ftn"), ValueError, "already has a tuning method"),
    ]


@pytest.mark.parametrize("index", range(len(_refusals())))
def test_refusals_are_one_line_and_change_nothing(index) -> None:
    call, error, message = _refusals()[index]
    _, model = _make("ftn", {}, "multi")
    model.set_alpha({"sigma": 0.5})
    with pytest.raises(error, match=message) as info:
        call(model)
    assert "\n" not in str(info.value)
    assert model.current_alpha == {"sigma": 0.5, "quality": 0.0}


@pytest.mark.parametrize(
    "build,message",
    [
        (lambda: attach_axes(TinyNet(), "adafm", ["sigma"]), "multi-axis models use the methods"),
        (lambda: attach_axes(TinyNet(), "ftn", ["sigma", "sigma"]), "named twice"),
        (lambda: attach_axes(TinyNet(), "ftn", [AxisSpec("sigma", 1)]), "2 or more"),
        (lambda: attach_axes(TinyNet(), "ftn", [AxisSpec("a.b")]), "without '.'"),
        (lambda: attach_axes(TinyNet(), "ftn", [AxisSpec("values")]), "reserved attribute name"),
        (lambda: attach_axes(TinyNet(), "ftn", [AxisSpec("sigma", 3, levels=(5, 15))]), "3 anchors but 2 levels"),
        (lambda: attach_axes(TokenNet(), "ftn", ["sigma"])(torch.rand(1, 5, 4), alpha={"sigma": _full(0.5, 1)}),
         "per-pixel alpha map needs"),
    ],
    ids=["method", "twice", "one-anchor", "dot", "reserved", "levels", "map-on-tokens"],
)
def test_refusals_when_building_or_running(build, message) -> None:
    with pytest.raises(ValueError, match=message):
        build()


def _two_models(method: str, options: dict) -> tuple[ftn.TunableModel, ftn.TunableModel]:
    torch.manual_seed(0)
    base = TinyNet().eval()
    denoise = ftn.attach(copy.deepcopy(base), method, **options).eval()
    dejpeg = ftn.attach(copy.deepcopy(base), method, **options).eval()
    _perturb(denoise.tuner_parameters(), seed=5)
    _perturb(dejpeg.tuner_parameters(), seed=6)
    denoise.metadata = {"task": "denoise", "levels": [{"sigma": 20}, {"sigma": 80}]}
    dejpeg.metadata = {"task": "dejpeg", "levels": [{"quality": 40}, {"quality": 10}]}
    return denoise, dejpeg


@pytest.mark.parametrize("method,options", METHODS, ids=METHOD_IDS)
def test_merging_two_one_axis_models_on_one_base(method, options) -> None:
    denoise, dejpeg = _two_models(method, options)
    merged = merge_axes({"sigma": denoise, "quality": dejpeg}).eval()
    assert [a.levels for a in merged.axes] == [(20.0, 80.0), (40.0, 10.0)]
    x = _x()
    with torch.no_grad():
        for a in (0.3, 0.5, 1.0):
            assert torch.equal(merged(x, alpha={"sigma": a}), denoise(x, alpha=a))
            assert torch.equal(merged(x, alpha={"quality": a}), dejpeg(x, alpha=a))
        mask = torch.rand(2, 1, 16, 16, generator=torch.Generator().manual_seed(4))
        assert torch.allclose(merged(x, alpha={"sigma": mask}), denoise(x, alpha=mask), atol=1e-5)
        both = merged(x, alpha={"sigma": 1.0, "quality": 1.0})
        assert (both - denoise(x, alpha=1.0)).abs().max() > 1e-3  # both axes act


@pytest.mark.parametrize(
    "spoil,message",
    [
        (lambda d, j: j.base_network.head.base.weight.data.add_(1e-3), "bases differ at 'head.weight'"),
        (lambda d, j: None, "tuner is ftn"),  # options differ: the second is rebuilt with groups=4 below
    ],
    ids=["other-base", "other-options"],
)
def test_merging_refuses_different_bases_or_options(spoil, message) -> None:
    denoise, dejpeg = _two_models("ftn", {})
    if "tuner" in message:
        dejpeg = ftn.attach(dejpeg.export(0.0), "ftn", groups=4)
    spoil(denoise, dejpeg)
    with pytest.raises(ValueError, match=message):
        merge_axes({"sigma": denoise, "quality": dejpeg})


SELECTIONS = [
    ("chained", {"axis": "sigma", "anchor": 2}),
    ("multi", {"axis": "sigma", "anchor": 3}),
    ("multi", {"axis": "quality", "anchor": 1}),
    ("multi", {"corner": {"sigma": 1, "quality": 1}}),
    ("chained", {"corner": {"quality": 1, "sigma": 2}}),
]


@pytest.mark.parametrize("method,options", METHODS, ids=METHOD_IDS)
@pytest.mark.parametrize("layout,selection", SELECTIONS, ids=lambda s: str(s))
def test_only_the_selected_tuner_gets_gradients(method, options, layout, selection) -> None:
    _, model = _make(method, options, layout)
    chosen = model.trainable(**selection)
    model.train()
    assert model.current_alpha == model.training_point(**selection)
    assert all(not m.training for m in model.modules() if isinstance(m, nn.GroupNorm))  # base norms stay eval
    model(_x()).square().mean().backward()
    ids = {id(p) for p in chosen}
    assert chosen and len(ids) < len(model.tuner_parameters())
    for name, p in model.named_parameters():
        if id(p) in ids:
            assert p.grad is not None, name
        else:
            assert p.grad is None and not p.requires_grad, name
    assert sum(float(p.grad.abs().sum()) for p in chosen) > 0


@pytest.mark.parametrize("method,options", METHODS, ids=METHOD_IDS)
def test_a_new_corner_changes_nothing_until_trained(method, options) -> None:
    _, model = _make(method, options, "two")
    x, setting = _x(), {"sigma": 0.7, "quality": _full(0.9)}
    with torch.no_grad():
        before = model(x, alpha=setting), model(x, alpha={"sigma": 1.0, "quality": 1.0})
        model.add_corner({"sigma": 1, "quality": 1})
        after = model(x, alpha=setting), model(x, alpha={"sigma": 1.0, "quality": 1.0})
    assert all(torch.equal(b, a) for b, a in zip(before, after, strict=True))


@pytest.mark.parametrize("method,options", METHODS, ids=METHOD_IDS)
def test_save_and_load_round_trip(tmp_path, method, options) -> None:
    torch.manual_seed(0)
    axes = [AxisSpec("sigma", 3, chained=True, levels=(5, 15, 30)), AxisSpec("quality", levels=(90, 10))]
    model = attach_axes(ftn.build_arch("adafm_net", size="mini"), method, axes,
                        corners=[{"sigma": 2, "quality": 1}], **options).eval()
    _perturb(model.tuner_parameters())
    model.metadata["task"] = "restore"
    path = tmp_path / "restore.safetensors"
    ftn.save_axes(model, path, note="tiny")
    meta = read_metadata(path)
    assert Levels.from_metadata(meta).describe() == "sigma 5 ... sigma 30; quality 90 ... quality 10"
    loaded = ftn.load_axes(path).eval()
    assert loaded.metadata["note"] == "tiny" and [a.chained for a in loaded.axes] == [True, False]
    assert [a.levels for a in loaded.axes] == [(5.0, 15.0, 30.0), (90.0, 10.0)]
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        for setting in ({"sigma": 1.5, "quality": 0.5}, {"sigma": _full(2.0, 1), "quality": 1.0}):
            assert torch.equal(loaded(x, alpha=setting), model(x, alpha=setting))
    ftn.save(ftn.attach(ftn.build_arch("adafm_net", size="mini"), "ftn"), tmp_path / "plain.safetensors")
    with pytest.raises(ValueError, match="not a multi-axis ftn model file"):
        ftn.load_axes(tmp_path / "plain.safetensors")


def test_ftn_save_and_ftn_load_speak_multi_axis_files(tmp_path) -> None:
    torch.manual_seed(0)
    model = attach_axes(ftn.build_arch("adafm_net", size="mini"), "ftn",
                        [AxisSpec("sigma", 3, levels=(5, 15, 30)), AxisSpec("quality", levels=(90, 10))]).eval()
    _perturb(model.tuner_parameters())
    path = tmp_path / "restore.safetensors"
    ftn.save(model, path, note="through ftn.save")  # was: a file without the structure, which no loader read
    loaded = ftn.load(path).eval()
    assert isinstance(loaded, ftn.AxesModel) and loaded.metadata["note"] == "through ftn.save"
    x, setting = torch.rand(1, 3, 16, 16), {"sigma": 1.3, "quality": 0.6}
    with torch.no_grad():
        assert torch.equal(loaded(x, alpha=setting), model(x, alpha=setting))


def test_a_custom_network_loads_with_model_given(tmp_path) -> None:
    _, model = _make("ftn", {}, "multi")
    path = tmp_path / "tiny.safetensors"
    ftn.save_axes(model, path)
    with pytest.raises(ValueError, match="pass an instance"):
        ftn.load_axes(path)
    loaded = ftn.load_axes(path, model=TinyNet()).eval()
    x = _x()
    with torch.no_grad():
        assert torch.equal(loaded(x, alpha={"sigma": 2.2, "quality": 0.4}), model(x, alpha={"sigma": 2.2, "quality": 0.4}))


@pytest.mark.parametrize("method,options", METHODS, ids=METHOD_IDS)
@pytest.mark.parametrize("chained", [False, True])
def test_a_two_anchor_tuner_imported_as_an_anchor(method, options, chained) -> None:
    denoise, _ = _two_models(method, options)
    model = attach_axes(denoise.export(0.0), method, [AxisSpec("sigma", 3, chained=chained)], **options).eval()
    x = _x()
    if chained and method == "ftn":  # anchor 2 of a chained axis starts from anchor 1, not from the base
        with pytest.raises(ValueError, match="is chained"):
            model.import_tunable(denoise, "sigma", 2)
        return
    model.import_tunable(denoise, "sigma", 2)
    with torch.no_grad():
        assert torch.equal(model(x, alpha=2.0), denoise(x, alpha=1.0))
        assert torch.equal(model(x, alpha=1.0), denoise(x, alpha=0.0))  # anchor 1 untrained: the identity


def test_merged_levels_and_calibration_survive_a_file(tmp_path) -> None:
    denoise, dejpeg = _two_models("ftn", {})
    denoise.metadata = ftn.levels.with_calibration(
        denoise.metadata, {"level_name": "sigma", "levels": [20, 50, 80], "alphas": [0.0, 0.6, 1.0]})
    merged = merge_axes({"sigma": denoise, "quality": dejpeg})
    path = tmp_path / "merged.safetensors"
    ftn.save_axes(merged, path)
    levels = Levels.from_metadata(read_metadata(path))
    assert levels.describe() == "sigma 20 ... sigma 80; quality 40 ... quality 10"
    assert levels.axis("sigma").calibration.alpha_at(50) == pytest.approx(0.6) and levels.axis("quality").calibration is None
    assert ftn.load_axes(path, model=TinyNet()).levels == levels


@pytest.mark.parametrize("method,options,layout", [CASES[1], CASES[2], CASES[-1]], ids=[CASE_IDS[1], CASE_IDS[2], CASE_IDS[-1]])
def test_onnx_with_an_alpha_vector_equals_the_model(tmp_path, method, options, layout) -> None:
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    _, model = _make(method, options, layout)
    path = tmp_path / "axes.onnx"
    written = ftn.axes_io.export_axes_onnx(model, path, trace_size=(16, 16))  # TinyNet takes even sizes
    assert written["multi_axis"]["axes"][0]["name"] == "sigma"
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = torch.rand(2, 3, 12, 20, generator=torch.Generator().manual_seed(7))  # not the traced size
    top = model.axis("sigma").segments
    cases = [((0.0, 0.0), (0.0, 0.0)), ((0.7, 0.2), (0.7, 0.2)), ((top, 1.0), (top, 1.0)), ((min(1.5, top), 0.5),) * 2,
             ((top - 0.5, 0.9),) * 2, ((top + 1.0, -1.0), (top, 0.0))]  # the last one is clamped in the graph
    with torch.no_grad():
        for given, meant in cases:
            got = session.run(None, {"image": x.numpy(), "alpha": torch.tensor(given, dtype=torch.float32).numpy()})[0]
            assert torch.allclose(torch.from_numpy(got), model(x, alpha=list(meant)), atol=1e-5), given


def test_onnx_of_an_ftn_architecture_takes_any_size(tmp_path) -> None:
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    torch.manual_seed(0)
    axes = [AxisSpec("sigma", 3, levels=(5, 15, 30)), AxisSpec("quality", levels=(90, 10))]
    model = attach_axes(ftn.build_arch("adafm_net", size="mini", image_skip=True), "ftn", axes, groups=16).eval()
    _perturb(model.tuner_parameters(), scale=0.02)
    path = tmp_path / "restore.onnx"
    written = ftn.axes_io.export_axes_onnx(model, path)
    assert Levels.from_metadata(written).describe() == "sigma 5 ... sigma 30; quality 90 ... quality 10"
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = torch.rand(1, 3, 10, 14)
    with torch.no_grad():
        got = session.run(None, {"image": x.numpy(), "alpha": torch.tensor([1.4, 0.6]).numpy()})[0]
        assert torch.allclose(torch.from_numpy(got), model(x, alpha=[1.4, 0.6]), atol=1e-5)


@pytest.mark.parametrize("method,options", METHODS, ids=METHOD_IDS)
def test_training_one_anchor_moves_it_alone(method, options) -> None:
    torch.manual_seed(0)
    base = TinyNet().eval()
    model = attach_axes(copy.deepcopy(base), method, [AxisSpec("sigma", 3, chained=True), "quality"]).eval()
    target = copy.deepcopy(base)  # a "level 2" network: the base with other weights
    _perturb(target.parameters(), scale=0.1, seed=9)
    x = _x(4)
    frozen = {n: p.detach().clone() for n, p in model.named_parameters()}
    optimiser = torch.optim.Adam(model.trainable(axis="sigma", anchor=2), lr=1e-2)
    losses = []
    for _ in range(15):
        optimiser.zero_grad()
        loss = (model(x) - target(x).detach()).square().mean()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0]
    moved = {n for n, p in model.named_parameters() if not torch.equal(p, frozen[n])}
    assert moved and all(".tuners.sigma.2." in n for n in moved)
    with torch.no_grad():
        assert torch.equal(model(x, alpha={}), base(x))


@pytest.mark.parametrize("method,options,layout", CASES, ids=CASE_IDS)
def test_a_new_setting_reuses_the_anchors_until_a_weight_changes(method, options, layout, monkeypatch) -> None:
    """Moving a slider or searching alpha must not rebuild every anchor (chained FTN kernels are the
    costly part); a changed weight must, and the outputs equal those of a copy that cached nothing."""
    _, model = _make(method, options, layout)
    layers = {id(layer) for _, layer in model.axes_layers()}
    built = []
    layer_class = type(next(layer for _, layer in model.axes_layers()))
    real = layer_class._anchor_tensors
    monkeypatch.setattr(layer_class, "_anchor_tensors",
                        lambda self, *a: (built.append(a) if id(self) in layers else None) or real(self, *a))
    x, settings = _x(), [{"sigma": 0.5}, {"sigma": 0.8, "quality": 0.3}, {"quality": 1.0}, {"sigma": _full(0.7)}]
    with torch.no_grad():
        for setting in settings:
            uncached = copy.deepcopy(model)(x, alpha=setting)  # new tensors: nothing of the cache applies
            assert torch.equal(model(x, alpha=setting), uncached), setting
        anchors = sum(axis.anchors - 1 for axis in model.axes) * len(layers)
        assert len(built) == anchors  # each anchor built once in all, whatever the settings
        _perturb(model.tuner_parameters(), seed=5)
        uncached = copy.deepcopy(model)(x, alpha={"sigma": 0.5})
        assert torch.equal(model(x, alpha={"sigma": 0.5}), uncached)
    assert len(built) == 2 * anchors


@pytest.mark.parametrize("edit,reason", [
    (lambda s: s["axes"][0].update(anchors=1000), "asks for more than"),
    (lambda s: s.update(corners=[{"sigma": 1}] * 65), "asks for more than"),
    (lambda s: s["axes"][0].update(anchors=6), "tensors do not fit"),  # more tuners than the file holds
])
def test_a_crafted_structure_is_refused_before_building(tmp_path, edit, reason) -> None:
    import json

    from safetensors import safe_open
    from safetensors.torch import save_file

    _, model = _make("ftn", {}, "multi")
    path = tmp_path / "m.safetensors"
    ftn.save_axes(model, path)
    with safe_open(str(path), framework="pt") as f:
        tensors, meta = {k: f.get_tensor(k) for k in f.keys()}, json.loads(f.metadata()["ftn"])
    meta.pop("axes", None)  # the anchor levels, which would no longer match the edited counts
    edit(meta["multi_axis"])
    save_file(tensors, str(path), metadata={"ftn": json.dumps(meta)})
    with pytest.raises(ValueError, match=reason):
        ftn.load(path, model=TinyNet())
