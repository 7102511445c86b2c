"""Export: a plain safetensors file at one alpha (spandrel reads an RRDBNet one as ESRGAN) and an ONNX
graph that takes alpha as its second input, checked against PyTorch with onnxruntime (the other ONNX
variants: tests/test_export_variants.py)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch

import ftn
from ftn.cli import main
from ftn.export import export_onnx, export_safetensors
from ftn.external import import_spandrel

LEVELS = [{"sigma": 20}, {"sigma": 80}]
CALIBRATION = {"level_name": "sigma", "levels": [20, 50, 80], "alphas": [0.0, 0.6, 1.0]}
TINY = {
    "adafm_net": {"size": "mini", "channels": 16, "blocks": 2},
    "rrdbnet": {"size": "mini", "channels": 16, "blocks": 1},  # growth stays 32: spandrel assumes it
    "cfsnet": {"size": "mini", "channels": 16, "blocks": 2, "scale": 2},
}


def _tunable(arch: str, method: str, seed: int = 0, arch_options: dict | None = None, **options) -> ftn.TunableModel:
    """A tiny tunable model whose tuner is randomly perturbed, so that alpha changes the output."""
    torch.manual_seed(seed)
    net = ftn.build_arch(arch, **{**TINY[arch], **(arch_options or {})})
    model = ftn.attach(net, method, **options).eval()
    with torch.no_grad():
        for p in model.tuner_parameters():
            p.add_(0.02 * torch.randn_like(p))
    model.metadata = {"task": "denoise", "levels": LEVELS, "calibration": CALIBRATION}
    return model


def _alpha_matters(model: ftn.TunableModel, x: torch.Tensor) -> float:
    with torch.no_grad():
        return float((model(x, alpha=1.0) - model(x, alpha=0.0)).abs().max())


@pytest.fixture(scope="module")
def spandrel() -> ModuleType:
    """spandrel, importable without torchvision (:func:`ftn.external.import_spandrel` says why and how)."""
    try:
        return import_spandrel()
    except ValueError as err:  # not installed: the message is the command that installs it
        pytest.skip(str(err))


# -- safetensors ----------------------------------------------------------------------------------

EXACT = [
    ("adafm_net", "ftn", {"groups": 4}),
    ("adafm_net", "dni", {}),
    ("adafm_net", "adafm", {"kernel_size": 1}),
    ("rrdbnet", "ftn", {}),
]


@pytest.mark.parametrize("arch,method,options", EXACT, ids=[f"{a}-{m}" for a, m, _ in EXACT])
def test_safetensors_export_is_the_model_at_that_alpha(tmp_path, arch, method, options) -> None:
    model = _tunable(arch, method, **options)
    x = torch.rand(1, 3, 12, 14)
    assert _alpha_matters(model, x) > 1e-3
    path = tmp_path / "plain.safetensors"
    written = export_safetensors(model, path, 0.3, source="tiny")

    plain = ftn.load(path).eval()
    assert not isinstance(plain, ftn.TunableModel)
    with torch.no_grad():
        torch.testing.assert_close(plain(x), model(x, alpha=0.3), atol=1e-5, rtol=1e-5)
    meta = plain.metadata
    assert meta == written
    assert meta["alpha"] == 0.3 and meta["task"] == "denoise" and meta["source_model"] == "tiny"
    assert meta["source_method"] == method and meta["source_levels"] == LEVELS
    assert meta["ftn_version"] == ftn.__version__
    # alpha 0.3 lies between the calibration's (alpha 0, sigma 20) and (alpha 0.6, sigma 50)
    assert meta["level"] == {"sigma": pytest.approx(20 + (50 - 20) * 0.3 / 0.6)}


@pytest.mark.parametrize("scale", [4, 2])
def test_rrdbnet_export_loads_in_spandrel_as_esrgan(tmp_path, spandrel, scale) -> None:
    model = _tunable("rrdbnet", "ftn", arch_options={"scale": scale})
    path = tmp_path / "esrgan.safetensors"
    export_safetensors(model, path, 0.7)

    descriptor = spandrel.ModelLoader().load_from_file(str(path))
    assert descriptor.architecture.id == "ESRGAN" and descriptor.scale == scale
    x = torch.rand(1, 3, 12, 16)  # a multiple of 4: spandrel's size requirement for unshuffled scales
    with torch.no_grad():
        theirs = descriptor.model.eval()(x)
        torch.testing.assert_close(theirs, model(x, alpha=0.7), atol=1e-5, rtol=1e-5)
        assert (theirs - model(x, alpha=0.0)).abs().max() > 1e-3


INEXACT = [("cfsnet", {}), ("dynamic_net", {}), ("adafm", {"kernel_size": 3})]


@pytest.mark.parametrize("method,options", INEXACT, ids=[m + str(o.get("kernel_size", "")) for m, o in INEXACT])
def test_methods_without_exact_export_refuse_safetensors(tmp_path, method, options) -> None:
    model = _tunable("adafm_net", method, **options)
    path = tmp_path / "plain.safetensors"
    with pytest.raises(ftn.ExportNotSupported, match="changes the network's structure") as info:
        export_safetensors(model, path, 0.5)
    assert "\n" not in str(info.value) and method in str(info.value)
    assert not path.exists()


# -- ONNX -----------------------------------------------------------------------------------------

ONNX_CASES = [
    ("rrdbnet", "ftn", {"scale": 2}, {"groups": 4}),  # weight space, with the x2 pixel-unshuffle padding
    ("adafm_net", "adafm", {}, {}),  # weight space, folded 1x1
    ("adafm_net", "dni", {}, {}),  # weight space, every tensor
    ("cfsnet", "cfsnet", {}, {}),  # feature space: the method's blocks are in the graph
]


@pytest.mark.parametrize(
    "arch,method,arch_options,options", ONNX_CASES, ids=[f"{a}-{m}" for a, m, _, _ in ONNX_CASES]
)
def test_onnx_graph_equals_pytorch_at_every_alpha(tmp_path, arch, method, arch_options, options) -> None:
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (pip install -e .[export])")
    pytest.importorskip("onnx", reason="onnx is not installed (pip install -e .[export])")
    model = _tunable(arch, method, arch_options=arch_options, **options)
    path = tmp_path / "model.onnx"
    export_onnx(model, path)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])

    for size in [(17, 13), (16, 24)]:  # odd and even sides, neither the traced size
        x = torch.rand(2, 3, *size)
        outputs = {}
        for alpha in (0.0, 0.3, 0.7, 1.0):
            with torch.no_grad():
                expected = model(x, alpha=alpha).numpy()
            got = session.run(None, {"image": x.numpy(), "alpha": np.array([alpha], dtype=np.float32)})[0]
            assert got.shape == expected.shape
            np.testing.assert_allclose(got, expected, atol=1e-4, rtol=1e-4)
            outputs[alpha] = got
        assert np.abs(outputs[1.0] - outputs[0.0]).max() > 1e-3  # the alpha input reaches the output


def test_onnx_interface_metadata_and_clamp(tmp_path) -> None:
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (pip install -e .[export])")
    onnx = pytest.importorskip("onnx", reason="onnx is not installed (pip install -e .[export])")
    model = _tunable("adafm_net", "ftn")
    path = tmp_path / "model.onnx"
    export_onnx(model, path, source="tiny")

    proto = onnx.load(str(path))
    inputs = {i.name: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim] for i in proto.graph.input}
    assert inputs == {"image": ["batch", 3, "height", "width"], "alpha": [1]}
    meta = json.loads({p.key: p.value for p in proto.metadata_props}["ftn"])
    assert meta["method"] == "ftn" and meta["arch"] == "adafm_net" and meta["levels"] == LEVELS
    assert meta["calibration"] == CALIBRATION and meta["source_model"] == "tiny"

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = torch.rand(1, 3, 10, 10).numpy()
    run = lambda a: session.run(None, {"image": x, "alpha": np.array([a], dtype=np.float32)})[0]  # noqa: E731
    np.testing.assert_array_equal(run(1.5), run(1.0))  # alpha is clamped to the trained range
    np.testing.assert_array_equal(run(-0.5), run(0.0))


# -- the command ----------------------------------------------------------------------------------


def _model_file(tmp_path, method: str = "ftn", **options) -> str:
    path = tmp_path / f"{method}.safetensors"
    ftn.save(_tunable("adafm_net", method, **options), path, task="denoise", levels=LEVELS, calibration=CALIBRATION)
    return str(path)


def test_cli_export_safetensors_says_what_it_wrote(tmp_path, capsys) -> None:
    out = tmp_path / "out.safetensors"
    assert main(["export", "--model", _model_file(tmp_path), "--level", "50", "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert str(out) in printed and "safetensors" in printed and "KB" in printed
    assert "alpha 0.6" in printed and "sigma 50" in printed and "sigma 20 ... sigma 80" in printed
    assert ftn.load(out).metadata["alpha"] == pytest.approx(0.6)


def test_cli_export_onnx_checks_the_graph(tmp_path, capsys) -> None:
    pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (pip install -e .[export])")
    pytest.importorskip("onnx", reason="onnx is not installed (pip install -e .[export])")
    out = tmp_path / "out.onnx"
    assert main(["export", "--model", _model_file(tmp_path, "dni"), "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert str(out) in printed and "onnx" in printed and "checked with onnxruntime" in printed
    assert out.is_file()


@pytest.mark.parametrize(
    "method,args,reason",
    [
        ("cfsnet", ["--alpha", "0.5", "--format", "safetensors"], "changes the network's structure"),
        ("ftn", ["--alpha", "0.5", "--per-pixel", "--format", "onnx"], "drop --alpha"),
        ("ftn", ["--format", "safetensors"], "exactly one of --alpha and --level"),
        ("ftn", ["--alpha", "1.5", "--format", "safetensors"], "[0, 1]"),
        ("ftn", ["--alpha", "sigma=0.5", "--format", "safetensors"], "--alpha needs a number for this one-axis model"),
        ("ftn", ["--level", "high", "--format", "safetensors"], "--level needs a number"),
    ],
)
def test_cli_export_refusals_are_one_line(tmp_path, capsys, method, args, reason) -> None:
    out = tmp_path / "out.bin"
    assert main(["export", "--model", _model_file(tmp_path, method), "-o", str(out), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("ftn export: error:") and "\n" not in err and reason in err
    assert not out.exists()


def test_cli_onnx_without_onnx_says_how_to_install(tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "onnx", None)  # makes `import onnx` fail, as when it is absent
    out = tmp_path / "out.onnx"
    assert main(["export", "--model", _model_file(tmp_path), "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "pip install -e .[export]" in err and "\n" not in err and not out.exists()


def test_onnx_of_an_untrained_tuner_still_takes_alpha(tmp_path) -> None:
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (pip install -e .[export])")
    pytest.importorskip("onnx", reason="onnx is not installed (pip install -e .[export])")
    torch.manual_seed(0)
    model = ftn.attach(ftn.build_arch("adafm_net", **TINY["adafm_net"]), "ftn").eval()  # FTN(f) == f: nothing moves
    path = tmp_path / "model.onnx"
    export_onnx(model, path)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["image", "alpha"]
    x = torch.rand(1, 3, 9, 11)
    got = session.run(None, {"image": x.numpy(), "alpha": np.array([0.5], dtype=np.float32)})[0]
    with torch.no_grad():
        np.testing.assert_allclose(got, model(x, alpha=0.5).numpy(), atol=1e-5)


def test_cli_export_never_replaces_its_input_or_a_shipped_model(tmp_path, capsys) -> None:
    from ftn.models import MODELS_DIR, available

    model = Path(_model_file(tmp_path))
    before = model.read_bytes()
    assert main(["export", "--model", str(model), "-o", str(model), "--alpha", "0.5"]) == 2
    err = capsys.readouterr().err.strip()
    assert "is the model being exported" in err and "\n" not in err and model.read_bytes() == before
    shipped = sorted(available())[0]
    target = MODELS_DIR / f"{shipped}.safetensors"
    digest = target.read_bytes()
    assert main(["export", "--model", str(model), "-o", str(target), "--alpha", "0.5"]) == 2
    assert "shipped-model folder" in capsys.readouterr().err and target.read_bytes() == digest
