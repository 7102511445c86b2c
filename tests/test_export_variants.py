"""ONNX variants of ``ftn export``: per-pixel maps as an input, one setting baked in (one image input),
float16; graphs of networks that need sides a multiple of ``size_multiple``. Every file is run with
onnxruntime here and compared with the PyTorch model independently of ``ftn.onnx_graphs.verify``."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn as nn

import ftn
from ftn.axes_io import export_axes_onnx, verify_axes_onnx
from ftn.cli import main
from ftn.export import export_onnx, verify_onnx
from ftn.methods import AxisSpec, Capabilities, attach_axes

ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (pip install -e .[export])")
onnx = pytest.importorskip("onnx", reason="onnx is not installed (pip install -e .[export])")

LEVELS = [{"sigma": 20}, {"sigma": 80}]
CALIBRATION = {"level_name": "sigma", "levels": [20, 50, 80], "alphas": [0.0, 0.6, 1.0]}


class RawUNet(nn.Module):
    """A U-Net that does not pad: its sides must be multiples of 4 (as many spandrel networks)."""

    size_multiple = 4

    def __init__(self, c: int = 8) -> None:
        super().__init__()
        self.head, self.tail = nn.Conv2d(3, c, 3, padding=1), nn.Conv2d(c, 3, 3, padding=1)
        self.down1, self.down2 = nn.Conv2d(c, c, 3, 2, 1), nn.Conv2d(c, c, 3, 2, 1)
        self.up2, self.up1 = nn.ConvTranspose2d(c, c, 2, 2), nn.ConvTranspose2d(c, c, 2, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = torch.relu(self.head(x))
        b = torch.relu(self.down1(a))
        return x + self.tail(self.up1(self.up2(torch.relu(self.down2(b))) + b) + a)


class TokenNet(nn.Module):
    """Linear layers on token sequences (B, N, C): no grid for a per-pixel map."""

    def __init__(self) -> None:
        super().__init__()
        self.embed, self.mix = nn.Conv2d(3, 8, 1), nn.Linear(8, 8)
        self.out = nn.Conv2d(8, 3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        tokens = self.mix(self.embed(x).flatten(2).transpose(1, 2))  # (B, H*W, C)
        return self.out(tokens.transpose(1, 2).reshape(b, 8, h, w))


NETS = {
    "adafm_net": lambda: ftn.build_arch("adafm_net", size="mini", channels=8, blocks=1),
    "rrdbnet_x2": lambda: ftn.build_arch("rrdbnet", size="mini", channels=8, blocks=1, scale=2),
    "cfsnet": lambda: ftn.build_arch("cfsnet", size="mini", channels=8, blocks=1, scale=2),
    "resunet": lambda: ftn.build_arch("resunet", size="mini", channels=8, blocks=1, scales=3),  # pads to 4 itself
    "raw_unet": RawUNet,  # needs multiples of 4: the graph pads
}


def _tunable(net: str, method: str, seed: int = 0, scale: float = 0.05, **options) -> ftn.TunableModel:
    """A tiny tunable model whose tuner is randomly perturbed (by ``scale``), so that alpha changes the output."""
    torch.manual_seed(seed)
    model = ftn.attach(NETS[net](), method, **options).eval()
    with torch.no_grad():
        for p in model.tuner_parameters():
            p.add_(scale * torch.randn_like(p))
    model.metadata = {"task": "denoise", "levels": LEVELS, "calibration": CALIBRATION}
    return model


def _axes(seed: int = 0) -> ftn.AxesModel:
    torch.manual_seed(seed)
    axes = [AxisSpec("sigma", 3, levels=(5, 25, 50)), AxisSpec("quality", levels=(90, 10))]
    model = attach_axes(NETS["adafm_net"](), "ftn", axes, corners=[{"sigma": 1, "quality": 1}], groups=4).eval()
    with torch.no_grad():
        for p in model.tuner_parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model


def _run(path, feeds: dict[str, np.ndarray]) -> np.ndarray:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1  # tiny images; threads only wait on each other on a busy machine
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    dtypes = {i.name: np.float16 if i.type == "tensor(float16)" else np.float32 for i in session.get_inputs()}
    assert set(dtypes) == set(feeds), f"the graph's inputs are {sorted(dtypes)}"
    return session.run(None, {k: v.astype(dtypes[k]) for k, v in feeds.items()})[0].astype(np.float32)


def _psnr(got: np.ndarray, want: np.ndarray) -> float:
    """PSNR with peak 1, or the largest |want| where larger (the random tuners here reach ~100 at alpha 1)."""
    mse = float(np.square(got.astype(np.float64) - want).mean())
    return math.inf if mse == 0 else 10 * math.log10(max(1.0, float(np.abs(want).max())) ** 2 / mse)


def _inputs(path) -> dict[str, list]:
    proto = onnx.load(str(path))
    return {i.name: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim] for i in proto.graph.input}


def _meta(path) -> dict:
    return json.loads({p.key: p.value for p in onnx.load(str(path)).metadata_props}["ftn"])


# -- the table: network x method x variant ------------------------------------------------------------

# (network, method, options, variant): "map" per-pixel, "baked" alpha 0.3 in the graph, "alpha" the
# alpha input; "+fp16" in float16. Sizes are odd and even, neither the traced 35 x 37.
CASES = [
    ("adafm_net", "ftn", {"groups": 4}, "map"),
    ("rrdbnet_x2", "dni", {}, "map"),
    ("cfsnet", "cfsnet", {}, "map"),  # feature space: the tuning blocks take the map
    ("adafm_net", "ftn", {"groups": 4}, "baked"),  # the plain network at alpha 0.3
    ("cfsnet", "cfsnet", {}, "baked"),  # no plain equivalent: the method's graph, alpha a constant
    ("resunet", "adafm", {}, "alpha"),  # a U-Net that pads to 4 itself
    ("raw_unet", "ftn", {}, "alpha"),  # a U-Net that needs multiples of 4: the graph pads
    ("raw_unet", "dni", {}, "map"),
    ("adafm_net", "ftn", {"groups": 4}, "alpha+fp16"),
    ("rrdbnet_x2", "ftn", {}, "map+fp16"),
]


@pytest.mark.parametrize("net,method,options,variant", CASES, ids=[f"{n}-{m}-{v}" for n, m, _, v in CASES])
def test_onnx_variant_equals_pytorch(tmp_path, net, method, options, variant) -> None:
    fp16 = variant.endswith("+fp16")
    # float16 cases: a smaller perturbation. At 0.05 the tiny RRDBNet's tuner sends outputs to ~100 at
    # alpha 1, no image a restorer gives; its activations then lose float16 digits (43.9 dB).
    model = _tunable(net, method, scale=0.01 if fp16 else 0.05, **options)
    kind = variant.removesuffix("+fp16")
    path = tmp_path / "model.onnx"
    written = export_onnx(model, path, per_pixel=kind == "map", alpha=0.3 if kind == "baked" else None, fp16=fp16)
    check = verify_onnx(path, model)
    assert check.passed and check.fp16 == fp16 and check.cases >= 2
    assert written["precision"] == ("fp16" if fp16 else "fp32") and ("pads_to" in written) == (net == "raw_unet")

    if fp16:  # float16 throughout: no float32 weights (the exporter's addcmul once turned the rest to float32)
        proto = onnx.load(str(path))
        wide = [t.name for t in proto.graph.initializer if t.data_type == onnx.TensorProto.FLOAT and np.prod(t.dims) > 4]
        assert not wide and proto.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT16
    names = {"map": ["image", "alpha_map"], "baked": ["image"], "alpha": ["image", "alpha"]}[kind]
    assert list(_inputs(path)) == names and _inputs(path)["image"] == ["batch", 3, "height", "width"]
    gen = torch.Generator().manual_seed(1)
    for size in [(13, 17), (12, 20)]:
        x = torch.rand(2, 3, *size, generator=gen)
        if kind == "map":
            left = (torch.arange(size[1]) < size[1] // 2).float().expand(2, 1, *size)  # 1 on the left half, 0 on the right
            settings = [(torch.rand(2, 1, *size, generator=gen), "random"), (left, "halves"), (left * 1.5, "clamped")]
            feeds = [({"image": x, "alpha_map": a}, a.clamp(0, 1), label) for a, label in settings]
        elif kind == "baked":
            feeds = [({"image": x}, 0.3, "baked")]
        else:
            feeds = [({"image": x, "alpha": torch.tensor([a])}, a, f"alpha {a}") for a in (0.0, 0.6, 1.0)]
        for given, meant, label in feeds:
            got = _run(path, {k: v.numpy() for k, v in given.items()})
            if net == "raw_unet" and size[0] % 4:  # PyTorch's network needs multiples of 4: pad and crop as the graph does
                from ftn.archs._common import pad_to_multiple

                m = pad_to_multiple(meant, 4) if isinstance(meant, torch.Tensor) else meant
                with torch.no_grad():
                    want = model(pad_to_multiple(x, 4), alpha=m)[..., : size[0], : size[1]].numpy()
            else:
                with torch.no_grad():
                    want = model(x, alpha=meant).numpy()
            assert got.shape == want.shape, label
            if fp16:
                assert _psnr(got, want) > 45, label
            else:
                np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-4, err_msg=label)
    if kind == "map":  # the map reaches the output: halves differ from both ends
        with torch.no_grad():
            assert (model(x, alpha=left) - model(x, alpha=0.0)).abs().max() > 1e-3


def test_a_map_of_one_value_equals_that_alpha_as_input(tmp_path) -> None:
    model = _tunable("adafm_net", "ftn", groups=4)
    export_onnx(model, tmp_path / "map.onnx", per_pixel=True)
    export_onnx(model, tmp_path / "alpha.onnx")
    x = np.random.RandomState(0).rand(1, 3, 11, 9).astype(np.float32)
    for a in (0.0, 0.4, 1.0):
        by_map = _run(tmp_path / "map.onnx", {"image": x, "alpha_map": np.full((1, 1, 11, 9), a, np.float32)})
        by_alpha = _run(tmp_path / "alpha.onnx", {"image": x, "alpha": np.array([a], np.float32)})
        np.testing.assert_allclose(by_map, by_alpha, atol=1e-5)


# -- several axes -------------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", ["map", "baked+fp16"])
def test_multi_axis_variants_equal_pytorch(tmp_path, variant) -> None:
    model = _axes()
    path = tmp_path / "axes.onnx"
    fp16 = variant.endswith("fp16")
    setting = {"sigma": 1.5, "quality": 0.7}
    written = export_axes_onnx(model, path, per_pixel=variant == "map", setting=None if variant == "map" else setting,
                               fp16=fp16)
    assert verify_axes_onnx(path, model).passed
    x = torch.rand(2, 3, 15, 10, generator=torch.Generator().manual_seed(2))
    if variant == "map":
        assert _inputs(path)["alpha_map"] == ["batch", 2, "height", "width"]
        ramp = torch.linspace(0, 1, 10).expand(2, 1, 15, 10)
        maps = torch.cat([ramp * 2, 1 - ramp], dim=1)  # sigma 0 ... 2 left to right, quality 1 ... 0
        got = _run(path, {"image": x.numpy(), "alpha_map": maps.numpy()})
        with torch.no_grad():
            want = model(x, alpha=maps).numpy()
        np.testing.assert_allclose(got, want, atol=1e-4)
    else:
        assert list(_inputs(path)) == ["image"] and written["alpha"] == setting and _meta(path)["precision"] == "fp16"
        got = _run(path, {"image": x.numpy()})
        with torch.no_grad():
            want = model(x, alpha=setting).numpy()
        assert _psnr(got, want) > 45


# -- refusals -----------------------------------------------------------------------------------------


def test_a_map_on_token_sequences_is_refused_in_one_line(tmp_path) -> None:
    model = ftn.attach(TokenNet(), "ftn").eval()
    path = tmp_path / "tokens.onnx"
    with pytest.raises(ValueError, match="cannot write this ONNX graph: a per-pixel alpha map needs") as info:
        export_onnx(model, path, per_pixel=True)
    assert "\n" not in str(info.value) and not path.exists()


def _model_file(tmp_path, method: str = "ftn") -> str:
    path = tmp_path / f"{method}.safetensors"
    ftn.save(_tunable("adafm_net", method), path, task="denoise", levels=LEVELS, calibration=CALIBRATION)
    return str(path)


REFUSALS = [
    (["--per-pixel", "--alpha", "0.5"], "out.onnx", "takes its alpha map at run time"),
    (["--per-pixel", "--level", "50"], "out.onnx", "drop --alpha/--level"),
    (["--per-pixel", "--alpha", "0.5"], "out.safetensors", "--per-pixel is an ONNX variant"),
    (["--fp16", "--alpha", "0.5"], "out.safetensors", "--fp16 is an ONNX variant"),
    (["--layout", "ftn"], "out.onnx", "an ONNX file has no key layout"),
    (["--alpha", "1.5"], "out.onnx", "[0, 1]"),
    (["--level", "high"], "out.onnx", "--level needs a number"),
]


@pytest.mark.parametrize("args,name,words", REFUSALS, ids=[" ".join(a) + " " + n for a, n, _ in REFUSALS])
def test_cli_variant_refusals_are_one_line(tmp_path, capsys, args, name, words) -> None:
    out = tmp_path / name
    assert main(["export", "--model", _model_file(tmp_path), "-o", str(out), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("ftn export: error:") and "\n" not in err and words in err, err
    assert not out.exists()


def test_cli_per_pixel_refused_for_a_method_without_maps(tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.setattr(ftn.TunableModel, "capabilities", property(lambda self: Capabilities(True, False, True)))
    out = tmp_path / "out.onnx"
    assert main(["export", "--model", _model_file(tmp_path), "--per-pixel", "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "method 'ftn' does not take per-pixel alpha maps" in err and "\n" not in err and not out.exists()


# -- the command's words ------------------------------------------------------------------------------


def test_cli_says_what_each_variant_is(tmp_path, capsys) -> None:
    model = _model_file(tmp_path)
    runs = {
        "map.onnx": (["--per-pixel"], ["alpha_map (N, 1, H, W)", "sigma 20 ... sigma 80", "per-pixel maps"]),
        "baked.onnx": (["--level", "50"], ["one input, image", "a plain adafm_net at alpha 0.6", "serving sigma 50"]),
        "half.onnx": (["--fp16"], ["float16", "PSNR", "dB"]),
    }
    for name, (args, words) in runs.items():
        assert main(["export", "--model", model, "-o", str(tmp_path / name), *args]) == 0
        printed = capsys.readouterr().out
        assert "checked with onnxruntime against PyTorch" in printed and "max difference" in printed
        for word in words:
            assert word in printed, (word, printed)
    assert _meta(tmp_path / "baked.onnx")["level"] == {"sigma": pytest.approx(50)}
    assert _inputs(tmp_path / "half.onnx")["alpha"] == [1]


def test_cli_multi_axis_per_pixel_in_float16(tmp_path, capsys) -> None:
    source, out = tmp_path / "restore.safetensors", tmp_path / "restore-map16.onnx"
    model = _axes()
    ftn.save_axes(model, source)
    assert main(["export", "--model", str(source), "--per-pixel", "--fp16", "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "alpha_map (N, 2, H, W)" in printed and "sigma in [0, 2], quality in [0, 1]" in printed and "PSNR" in printed
    maps = np.stack([np.full((9, 14), 1.5), np.tile(np.linspace(0, 1, 14), (9, 1))])[None].astype(np.float32)
    x = np.random.RandomState(1).rand(1, 3, 9, 14).astype(np.float32)
    with torch.no_grad():
        want = model(torch.from_numpy(x), alpha=torch.from_numpy(maps)).numpy()
    assert _psnr(_run(out, {"image": x, "alpha_map": maps}), want) > 45
