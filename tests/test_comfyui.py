"""ComfyUI nodes (``ftn.integrations.comfyui``): ComfyUI's conventions, checked as tables, and what the nodes do.

ComfyUI itself is not installed here (it declares torchvision); the nodes are called as ComfyUI calls
them (keyword arguments, under ``torch.inference_mode``), with IMAGE (B, H, W, C) and MASK (B, H, W)
tensors, and ComfyUI's ``folder_paths`` / ``comfy.utils`` stood in for where the nodes use them.
Every output is compared with the model called directly at the setting.
"""

from __future__ import annotations

import importlib.util
import inspect
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest
import torch

import ftn
from ftn.integrations import comfyui
from ftn.integrations.comfyui import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS, FTNApply, FTNExportPlainModel, FTNLoadModel
from ftn.io import read_metadata
from ftn.levels import with_calibration
from ftn.methods.axes import AxisSpec, attach_axes

ROOT = Path(__file__).resolve().parents[1]
H, W = 37, 45  # not multiples of anything the networks pad to
BATCH = 2


def _net() -> torch.nn.Module:
    return ftn.build_arch("adafm_net", size="mini", channels=8, blocks=1, image_skip=True)


def _perturb(model: torch.nn.Module) -> torch.nn.Module:
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():  # tuners away from the identity, so that the setting matters
        for p in model.tuner_parameters():
            p.add_(0.02 * torch.randn(p.shape, generator=gen))
    return model.eval()


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """one: a calibrated one-axis FTN model (sigma 5 ... 50); axes: sigma (3 anchors, calibrated) x
    quality (2 anchors); plain: a network with no method attached."""
    folder = tmp_path_factory.mktemp("comfy")
    torch.manual_seed(0)
    one = _perturb(ftn.attach(_net(), "ftn", groups=4))
    torch.manual_seed(1)
    axes = attach_axes(_net(), "ftn", [AxisSpec("sigma", 3, levels=(5, 25, 50)), AxisSpec("quality", 2, levels=(90, 10))],
                       groups=4)
    axes.metadata = with_calibration(axes.levels.replace_in({"task": "restore"}),
                                     {"levels": [5, 10, 25, 50], "alphas": [0.0, 0.4, 1.0, 2.0], "source": "test"}, "sigma")
    paths = {name: folder / f"{name}.safetensors" for name in ("one", "axes", "plain")}
    ftn.save(one, paths["one"], task="denoise", levels=[{"sigma": 5}, {"sigma": 50}],
             calibration={"level_name": "sigma", "levels": [5, 20, 50], "alphas": [0.0, 0.5, 1.0]})
    ftn.save(_perturb(axes), paths["axes"])
    ftn.save(_net(), paths["plain"])
    return paths


@pytest.fixture(scope="module")
def loaded(files: dict[str, Path]) -> dict[str, comfyui.FTNModel]:
    return {name: FTNLoadModel().load("denoise", "cpu", path=str(files[name]))[0] for name in ("one", "axes")}


def _images(channels: int = 3, seed: int = 0) -> torch.Tensor:
    return torch.rand(BATCH, H, W, channels, generator=torch.Generator().manual_seed(seed))


def _direct(model: torch.nn.Module, images: torch.Tensor, alpha: object, clamp: bool = True) -> torch.Tensor:
    """The model called on the batch in PyTorch's layout, back in ComfyUI's."""
    with torch.no_grad():
        out = model(images.permute(0, 3, 1, 2), alpha=alpha).permute(0, 2, 3, 1)
    return out.clamp(0, 1) if clamp else out


# -- ComfyUI's conventions, node by node ------------------------------------------------------------

SCALARS = {"INT", "FLOAT", "STRING", "BOOLEAN"}
TENSORS = {"IMAGE", "MASK"}


def _check_spec(name: str, spec: object, own_types: set[str]) -> None:
    assert isinstance(spec, tuple) and len(spec) in (1, 2), f"{name}: a spec is (TYPE,) or (TYPE, options)"
    kind, options = spec[0], spec[1] if len(spec) == 2 else {}
    assert isinstance(options, dict), f"{name}: options must be a dict"
    if isinstance(kind, list):  # COMBO: the choices, the first the default
        assert kind and all(isinstance(c, str) for c in kind), f"{name}: a COMBO lists strings"
        return
    assert kind in SCALARS | TENSORS | own_types, f"{name}: unknown type {kind!r}"
    if kind in SCALARS:
        assert "default" in options, f"{name}: a {kind} widget needs a default"
    if kind in ("INT", "FLOAT"):
        assert options["min"] <= options["default"] <= options["max"], f"{name}: default outside [min, max]"
        assert isinstance(options["default"], int if kind == "INT" else float)


@pytest.mark.parametrize("node", list(NODE_CLASS_MAPPINGS))
def test_every_node_follows_comfyuis_conventions(node: str) -> None:
    cls = NODE_CLASS_MAPPINGS[node]
    assert isinstance(inspect.getattr_static(cls, "INPUT_TYPES"), classmethod)
    inputs = cls.INPUT_TYPES()
    assert set(inputs) <= {"required", "optional", "hidden"} and "required" in inputs
    own = {t for c in NODE_CLASS_MAPPINGS.values() for t in c.RETURN_TYPES if t not in SCALARS | TENSORS}
    assert own == {"FTN_MODEL"}
    for group in inputs.values():
        for name, spec in group.items():
            _check_spec(name, spec, own)
    assert isinstance(cls.RETURN_TYPES, tuple) and all(isinstance(t, str) for t in cls.RETURN_TYPES)
    assert isinstance(cls.RETURN_NAMES, tuple) and len(cls.RETURN_NAMES) == len(cls.RETURN_TYPES)
    assert len(cls.OUTPUT_TOOLTIPS) == len(cls.RETURN_TYPES)
    assert isinstance(cls.CATEGORY, str) and cls.CATEGORY and isinstance(cls.DESCRIPTION, str)
    assert isinstance(getattr(cls, "OUTPUT_NODE", False), bool)
    function = getattr(cls, cls.FUNCTION)  # ComfyUI calls cls().<FUNCTION>(**inputs)
    params = [p for p in inspect.signature(function).parameters if p != "self"]
    names = [n for group in inputs.values() for n in group]
    assert sorted(params) == sorted(names), "every input is a keyword argument of FUNCTION, and nothing else"
    optional = inspect.signature(function).parameters
    assert all(optional[n].default is not inspect.Parameter.empty for n in inputs.get("optional", {}))
    assert node in NODE_DISPLAY_NAME_MAPPINGS and node.startswith("FTN")


def test_the_export_node_is_an_output_node_and_the_others_are_not() -> None:
    assert {n for n, c in NODE_CLASS_MAPPINGS.items() if getattr(c, "OUTPUT_NODE", False)} == {"FTNExportPlainModel"}
    assert set(NODE_DISPLAY_NAME_MAPPINGS) == set(NODE_CLASS_MAPPINGS)


def test_custom_node_folder_hands_comfyui_the_packages_mappings() -> None:
    folder = ROOT / "comfyui" / "ftn_nodes"
    # as ComfyUI's load_custom_node does: the folder's __init__.py under a module name made from its path
    spec = importlib.util.spec_from_file_location(str(folder).replace(".", "_x_"), folder / "__init__.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.NODE_CLASS_MAPPINGS is NODE_CLASS_MAPPINGS
    assert module.NODE_DISPLAY_NAME_MAPPINGS is NODE_DISPLAY_NAME_MAPPINGS


def test_imports_stay_light() -> None:
    code = ("import sys, ftn; assert 'ftn.integrations' not in sys.modules; import ftn.integrations.comfyui; "
            "bad = [m for m in sys.modules if m.split('.')[0] in ('comfy', 'folder_paths', 'gradio', 'onnx', 'av')]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


# -- FTN Load Model ---------------------------------------------------------------------------------


def test_load_lists_shipped_models_and_describes_the_levels(files: dict[str, Path]) -> None:
    assert set(ftn.models.available()) <= set(FTNLoadModel.INPUT_TYPES()["required"]["model"][0])
    model, info = FTNLoadModel().load("denoise", "cpu", path=str(files["one"]))
    assert isinstance(model.model, ftn.TunableModel) and not model.model.training
    assert "alpha 0 ... 1 = sigma 5 ... sigma 50" in info and "level sigma 5 ... 50 (calibrated)" in info
    model, info = FTNLoadModel().load("denoise", "cpu", path=str(files["axes"]))
    assert "2 axes" in info and "sigma: 3 anchors (alpha 0 = sigma 5, 1 = sigma 25, 2 = sigma 50)" in info


def test_load_again_when_the_file_changes(files: dict[str, Path], tmp_path: Path) -> None:
    path = tmp_path / "m.safetensors"
    path.write_bytes(files["one"].read_bytes())
    before = FTNLoadModel.IS_CHANGED("denoise", "cpu", str(path))
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    assert FTNLoadModel.IS_CHANGED("denoise", "cpu", str(path)) != before


def test_comfyuis_model_and_output_folders_are_used_where_comfyui_runs(files: dict[str, Path], tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    models_dir, output = tmp_path / "models", tmp_path / "output"
    (models_dir / "ftn").mkdir(parents=True)
    (models_dir / "ftn" / "mine.safetensors").write_bytes(files["one"].read_bytes())
    fake = types.ModuleType("folder_paths")  # the part of ComfyUI's folder_paths the nodes use
    fake.models_dir, fake.folder_names_and_paths = str(models_dir), {}
    fake.get_filename_list = lambda folder: sorted(p.name for d in fake.folder_names_and_paths[folder][0]
                                                   for p in Path(d).glob("*.safetensors"))
    fake.get_full_path = lambda folder, name: next((str(Path(d) / name) for d in fake.folder_names_and_paths[folder][0]
                                                    if (Path(d) / name).is_file()), None)
    fake.get_output_directory = lambda: str(output)
    monkeypatch.setitem(sys.modules, "folder_paths", fake)
    assert "mine.safetensors" in FTNLoadModel.INPUT_TYPES()["required"]["model"][0]
    assert fake.folder_names_and_paths["ftn"][0] == [str(models_dir / "ftn")]
    model, _ = FTNLoadModel().load("mine.safetensors", "cpu")
    result = FTNExportPlainModel().export(model, 0.5, "sub/plain.safetensors")
    assert Path(result["result"][0]) == output / "sub" / "plain.safetensors" and Path(result["result"][0]).is_file()


# -- FTN Apply --------------------------------------------------------------------------------------

# (model, widgets, the setting the model must be called at)
APPLY_CASES = {
    "one axis, alpha": ("one", {"alpha": 0.3}, 0.3),
    "one axis, level": ("one", {"alpha": 0.9, "level": "20"}, 0.5),
    "one axis, level by name": ("one", {"level": "sigma=35"}, 0.75),
    "one axis, alphas": ("one", {"alphas": "0.8"}, 0.8),
    "axes, levels": ("axes", {"level": "sigma=10,quality=50"}, {"sigma": 0.4, "quality": 0.5}),
    "axes, alphas": ("axes", {"alphas": "1.5,1"}, {"sigma": 1.5, "quality": 1.0}),
    "axes, alpha and level": ("axes", {"alphas": "sigma=2", "level": "quality=90"}, {"sigma": 2.0, "quality": 0.0}),
}


@pytest.mark.parametrize("case", list(APPLY_CASES))
def test_apply_is_the_model_at_the_setting_in_comfyuis_layout(case: str, loaded: dict) -> None:
    which, widgets, setting = APPLY_CASES[case]
    images = _images()
    with torch.inference_mode():  # as ComfyUI runs nodes
        out, words = FTNApply().apply(loaded[which], images, **widgets)
    assert out.shape == (BATCH, H, W, 3) and out.dtype == torch.float32 and out.device == images.device
    assert 0.0 <= float(out.min()) and float(out.max()) <= 1.0 and isinstance(words, str) and words
    assert (out - _direct(loaded[which].model, images, setting)).abs().max() < 1e-5


@pytest.mark.parametrize("channels", [1, 4])
def test_grey_and_transparent_images_keep_their_channels(channels: int, loaded: dict) -> None:
    images = _images(channels)
    out, _ = FTNApply().apply(loaded["one"], images, alpha=0.4)
    assert out.shape == images.shape and out.dtype == torch.float32
    if channels == 4:  # transparency passed through, colour processed
        assert torch.equal(out[..., 3], images[..., 3])
        assert (out[..., :3] - _direct(loaded["one"].model, images[..., :3], 0.4)).abs().max() < 1e-5
    else:  # a grey image through a colour model: replicated, averaged back
        expected = _direct(loaded["one"].model, images.expand(-1, -1, -1, 3), 0.4, clamp=False).mean(dim=-1, keepdim=True)
        expected = expected.clamp(0, 1)
        assert (out - expected).abs().max() < 1e-5


# (model, widgets, mask value, its shape, the number the constant mask must equal)
CONSTANT_MASKS = {
    "one axis, (H, W)": ("one", {"alpha": 0.8}, 0.5, (H, W), 0.4),
    "one axis, (1, H, W) of another size": ("one", {"alpha": 1.0}, 0.25, (1, 64, 64), 0.25),
    "one axis, white": ("one", {"level": "20"}, 1.0, (BATCH, H, W), 0.5),
    "axes, every axis": ("axes", {"alphas": "2,1"}, 0.5, (H, W), {"sigma": 1.0, "quality": 0.5}),
    "axes, mask on sigma": ("axes", {"alphas": "2,1", "mask_axes": "sigma"}, 0.25, (H, W), {"sigma": 0.5, "quality": 1.0}),
}


@pytest.mark.parametrize("case", list(CONSTANT_MASKS))
def test_a_constant_mask_equals_the_number(case: str, loaded: dict) -> None:
    which, widgets, value, shape, number = CONSTANT_MASKS[case]
    images = _images(seed=1)
    with torch.inference_mode():
        masked, words = FTNApply().apply(loaded[which], images, mask=torch.full(shape, value), **widgets)
        plain, _ = FTNApply().apply(loaded[which], images, alpha=number if isinstance(number, float) else 0.5,
                                    alphas="" if isinstance(number, float) else ",".join(str(v) for v in number.values()))
    assert masked.shape == (BATCH, H, W, 3) and "mask" in words
    assert (masked - plain).abs().max() < 1e-5


def test_a_mask_per_image_and_a_map_per_pixel(loaded: dict) -> None:
    images, model = _images(seed=2), loaded["one"]
    mask = torch.zeros(BATCH, H, W)
    mask[1, :, W // 2:] = 1.0  # image 0 at alpha 0 everywhere; image 1: left half alpha 0, right half 0.7
    out, _ = FTNApply().apply(model, images, alpha=0.7, mask=mask)
    assert (out[0] - _direct(model.model, images[:1], 0.0)[0]).abs().max() < 1e-5
    amap = mask[1][None, None] * 0.7
    assert (out[1] - _direct(model.model, images[1:], amap)[0]).abs().max() < 1e-5


def test_tiles_equal_the_whole_image_where_the_overlap_covers_the_network(loaded: dict) -> None:
    images = torch.rand(1, 150, 140, 3, generator=torch.Generator().manual_seed(3))
    whole, _ = FTNApply().apply(loaded["one"], images, alpha=0.6)
    tiled, _ = FTNApply().apply(loaded["one"], images, alpha=0.6, tile=96)
    assert tiled.shape == whole.shape and (tiled - whole).abs().max() < 1e-4


def test_progress_and_cancel_go_through_comfyui(loaded: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    steps: list[int] = []
    utils = types.ModuleType("comfy.utils")
    utils.ProgressBar = lambda total: types.SimpleNamespace(update=lambda n: steps.append(n))
    management = types.ModuleType("comfy.model_management")
    monkeypatch.setitem(sys.modules, "comfy.utils", utils)
    monkeypatch.setitem(sys.modules, "comfy.model_management", management)
    management.throw_exception_if_processing_interrupted = lambda: None
    FTNApply().apply(loaded["one"], _images(), alpha=0.5)
    assert steps == [1] * BATCH

    def cancelled() -> None:
        raise InterruptedError("cancelled")

    management.throw_exception_if_processing_interrupted = cancelled
    with pytest.raises(InterruptedError):
        FTNApply().apply(loaded["one"], _images(), alpha=0.5)


# -- FTN Export Plain Model -------------------------------------------------------------------------

EXPORT_CASES = {
    "one axis, alpha": ("one", {"alpha": 0.3}, 0.3),
    "one axis, level": ("one", {"level": "35"}, 0.75),
    "axes, levels": ("axes", {"level": "sigma=10,quality=50"}, {"sigma": 0.4, "quality": 0.5}),
}


@pytest.mark.parametrize("case", list(EXPORT_CASES))
def test_export_writes_the_plain_network_at_the_setting(case: str, loaded: dict, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    which, widgets, setting = EXPORT_CASES[case]
    monkeypatch.chdir(tmp_path)  # outside ComfyUI the output folder is the current one
    with torch.inference_mode():
        result = FTNExportPlainModel().export(loaded[which], filename="plain.safetensors", **widgets)
    path = Path(result["result"][0])
    assert path == tmp_path / "plain.safetensors" and result["ui"]["text"][0].startswith("wrote ")
    meta = read_metadata(path)
    plain = ftn.load_base(path, meta["arch"], **meta["arch_options"])
    images = _images(seed=4)
    with torch.no_grad():
        ours = plain(images.permute(0, 3, 1, 2)).clamp(0, 1).permute(0, 2, 3, 1)
    assert (ours - _direct(loaded[which].model, images, setting)).abs().max() < 1e-5


# -- refusals: one line, ValueError, nothing written ------------------------------------------------

REFUSALS = {
    "level not a number": ("apply", "one", {"level": "abc"}, "level 'abc' is not a number"),
    "two values for a one-axis model": ("apply", "one", {"level": "20,3"}, "has 2 values"),
    "an axis the model lacks": ("apply", "one", {"level": "quality=20"}, "no axis 'quality'"),
    "alpha out of range": ("apply", "one", {"alpha": 1.5}, "[0, 1]"),
    "level and alphas on one axis": ("apply", "one", {"level": "20", "alphas": "0.5"}, "not both"),
    "several axes, only alpha": ("apply", "axes", {"alpha": 0.5}, "this model has 2 axes (sigma, quality)"),
    "axis alpha out of range": ("apply", "axes", {"alphas": "sigma=3"}, "outside sigma's range [0, 2]"),
    "unknown axis": ("apply", "axes", {"level": "noise=3"}, "no axis 'noise'"),
    "axis set twice": ("apply", "axes", {"alphas": "sigma=1", "level": "sigma=10"}, "set by both alphas and level"),
    "level outside the anchors": ("apply", "axes", {"level": "quality=95"}, "outside the anchors"),
    "mask axis unknown": ("apply", "axes", {"alphas": "1,1", "mask": torch.ones(H, W), "mask_axes": "noise"}, "mask_axes"),
    "masks for another batch": ("apply", "one", {"mask": torch.ones(3, H, W)}, "3 masks for 2 images"),
    "mask of another rank": ("apply", "one", {"mask": torch.ones(1, 1, H, W)}, "MASK must be"),
    "image in PyTorch's layout": ("apply", "one", {"image": torch.rand(2, 3, H, W)}, "IMAGE must be"),
    "export outside the folder": ("export", "one", {"filename": "../x.safetensors"}, "must stay inside"),
    "export to an absolute path": ("export", "one", {"filename": "/tmp/x.safetensors"}, "must stay inside"),
    "export to onnx": ("export", "one", {"filename": "x.onnx"}, "must end in .safetensors"),
    "export at a bad level": ("export", "axes", {"level": "sigma=x"}, "is not a number"),
}


@pytest.mark.parametrize("case", list(REFUSALS))
def test_refusals_are_one_line_value_errors(case: str, loaded: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    node, which, widgets, words = REFUSALS[case]
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError) as caught:
        if node == "apply":
            FTNApply().apply(loaded[which], **{"image": _images(), **widgets})
        else:
            FTNExportPlainModel().export(loaded[which], **widgets)
    message = str(caught.value)
    assert words in message and "\n" not in message and len(message) < 240, message
    assert not list(tmp_path.iterdir()) and not (tmp_path.parent / "x.safetensors").exists()


def test_a_plain_network_is_refused_by_the_loader(files: dict[str, Path]) -> None:
    with pytest.raises(ValueError, match="plain network with no alpha to set"):
        FTNLoadModel().load("denoise", "cpu", path=str(files["plain"]))
