"""Bases from other code (spandrel, ftn.load_base) and export in the original checkpoint's key layout.

Each case is a tiny network with random weights, built from spandrel's own architecture classes (or
ftn's RRDBNet in BasicSR's layout) and saved as a checkpoint the way its authors' code saves it. For
each: the tuned model at alpha 0 is the base bit for bit; the tuned file rebuilds its base
(``ftn.load``); ``ftn export --alpha`` writes the plain base in the original layout, which the
original's reader (spandrel, or plain ``torch.load(weights_only=True)`` and the original key names)
reads back with the tuned model's output.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn as nn
from PIL import Image
from safetensors import safe_open
from safetensors.torch import save_file

import ftn
from ftn.cli import main
from ftn.external import base_state_from_tuned, describe_layout, import_spandrel, load_spandrel, to_original
from ftn.io import read_metadata
from ftn.tuning import load_network

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
DNCNN = SHARED / "thirdparty" / "dncnn-pytorch"
pytestmark = pytest.mark.filterwarnings("ignore:torch.meshgrid")  # inside spandrel's SwinIR
needs_dncnn = pytest.mark.skipif(not (DNCNN / "DnCNN-S-25.pth").is_file(),
                                 reason=f"the published DnCNN pickles are not at {DNCNN} (../shared beside the checkout)")


@pytest.fixture(scope="module")
def spandrel() -> ModuleType:
    try:
        return import_spandrel()
    except ValueError as err:
        pytest.skip(str(err))


def _randomise_norms(net: nn.Module, seed: int) -> nn.Module:
    """Running statistics and affine parameters away from their defaults, so that a dropped or swapped one shows."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.running_mean.copy_(0.1 * torch.randn(m.running_mean.shape, generator=g))
                m.running_var.copy_(0.5 + torch.rand(m.running_var.shape, generator=g))
            if isinstance(m, (nn.modules.batchnorm._BatchNorm, nn.LayerNorm)) and m.weight is not None:
                m.weight.add_(0.1 * torch.randn(m.weight.shape, generator=g))
    return net.eval()


def _esrgan(sp: ModuleType) -> nn.Module:
    from spandrel.architectures.ESRGAN import ESRGAN

    return ESRGAN(in_nc=3, out_nc=3, num_filters=8, num_blocks=1, scale=1)  # a 1x restorer: ftn tune denoises


def _swinir(sp: ModuleType) -> nn.Module:
    from spandrel.architectures.SwinIR import SwinIR

    return SwinIR(img_size=16, in_chans=3, embed_dim=12, depths=[1], num_heads=[2], window_size=4, mlp_ratio=2,
                  upscale=1, upsampler="", resi_connection="1conv")


def _dncnn_kair(sp: ModuleType) -> nn.Module:
    from spandrel.architectures.DnCNN import DnCNN

    return DnCNN(in_nc=1, out_nc=1, nc=8, nb=5, act_mode="BR")  # BatchNorm between the convs


def _rrdbnet_basicsr(sp: ModuleType) -> nn.Module:
    return ftn.build_arch("rrdbnet", size="mini", channels=16, blocks=1)  # growth 32: what spandrel assumes


@dataclass(frozen=True)
class Case:
    name: str
    build: Callable[[ModuleType], nn.Module]
    save: Callable[[dict[str, torch.Tensor]], Any]  # the checkpoint object as its authors' code writes it
    suffix: str
    kind: str  # load_network's record: "spandrel" or "load_base"
    arch: str  # spandrel's id (what spandrel detects in the export)
    method: str
    channels: int


def _without_counters(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {f"module.{k}": v for k, v in sd.items() if not k.endswith("num_batches_tracked")}


CASES = [
    # conv only, spandrel's own (old ESRGAN) key layout model.0.weight ..., in a BasicSR-style wrapper
    Case("esrgan", _esrgan, lambda sd: {"params_ema": sd}, ".pth", "spandrel", "ESRGAN", "ftn", 3),
    # a transformer: nn.Linear layers and LayerNorm, a flat safetensors file
    Case("swinir", _swinir, lambda sd: sd, ".safetensors", "spandrel", "SwinIR", "ftn", 3),
    # BatchNorm; DataParallel's module. prefix and no num_batches_tracked (as older files); DNI moves every tensor
    Case("dncnn-kair", _dncnn_kair, _without_counters, ".pth", "spandrel", "DnCNN", "dni", 1),
    # BasicSR's RRDBNet keys (ftn.load_base reads them; spandrel renames them to the old layout), params_ema + params
    Case("rrdbnet-basicsr", _rrdbnet_basicsr, lambda sd: {"params_ema": sd, "params": dict(sd)}, ".pth", "load_base",
         "ESRGAN", "adafm", 3),
]


def _checkpoint(case: Case, sp: ModuleType, folder: Path) -> tuple[Path, Any]:
    torch.manual_seed(0)
    net = _randomise_norms(case.build(sp), seed=1)
    obj = case.save({k: v.clone() for k, v in net.state_dict().items()})
    path = folder / f"{case.name}{case.suffix}"
    if case.suffix == ".safetensors":
        save_file({k: v.contiguous() for k, v in obj.items()}, str(path))
    else:
        torch.save(obj, path)
    return path, obj


def _tuned(network: nn.Module, method: str) -> ftn.TunableModel:
    """``network`` with ``method`` attached and its tuner randomly perturbed (what training would do)."""
    model = ftn.attach(network, method).eval()
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for p in model.tuner_parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    return model


def _image(channels: int, side: int = 16) -> torch.Tensor:
    return torch.rand(1, channels, side, side, generator=torch.Generator().manual_seed(3))


def _photos(folder: Path) -> Path:
    """Four tiny random PNGs: training data for a two-step run."""
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(4):
        Image.fromarray(rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    return folder


def _flatten(obj: Any, prefix: str = "") -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    for k, v in obj.items():
        out.update(_flatten(v, f"{prefix}{k}/") if isinstance(v, dict) else {prefix + k: v})
    return out


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_tuned_external_base_rebuilds_and_exports_in_the_original_layout(case, spandrel, tmp_path) -> None:
    path, original = _checkpoint(case, spandrel, tmp_path)
    network, record = load_network(path)
    assert record["kind"] == case.kind
    if case.kind == "spandrel":
        assert record["arch"] == case.arch
    x = _image(case.channels)
    with torch.no_grad():
        base_out = network(x)
    json.dumps(record)  # the record goes into the file's JSON metadata

    model = _tuned(network, case.method)
    with torch.no_grad():
        assert torch.equal(model(x, alpha=0.0), base_out), "alpha 0 is not the base bit for bit"
        tuned_out = model(x, alpha=0.3)
    assert not torch.allclose(tuned_out, base_out), "the perturbed tuner should change the output"
    out = tmp_path / "tuned.safetensors"
    ftn.save(model, out, tuned={"base": record})

    loaded = ftn.load(out)
    with torch.no_grad():
        assert torch.equal(loaded(x, alpha=0.3), tuned_out), "the tuned file does not rebuild the same model"
        assert torch.equal(loaded(x, alpha=0.0), base_out)

    for suffix in (".pth", ".safetensors"):
        exported = tmp_path / f"export{suffix}"
        assert main(["export", "--model", str(out), "--alpha", "0.3", "-o", str(exported)]) == 0
        if suffix == ".pth":
            written = torch.load(exported, map_location="cpu", weights_only=True)
            # the original's structure: wrapper(s), prefix and key names; only the values moved
            assert list(_flatten(written)) == list(_flatten(original))
        else:
            with safe_open(str(exported), framework="pt") as f:
                written = {k: f.get_tensor(k) for k in f.keys()}
                assert "ftn" not in (f.metadata() or {})  # ftn reads it as the plain checkpoint it is
            inner = original
            while any(isinstance(v, dict) for v in inner.values()):
                inner = next(v for v in inner.values() if isinstance(v, dict))
            assert written.keys() == inner.keys()
        descriptor = spandrel.ModelLoader().load_from_file(str(exported))  # as chaiNNer and ComfyUI read it
        assert str(descriptor.architecture.id) == case.arch
        with torch.no_grad():
            got = descriptor.model.eval()(x)
        torch.testing.assert_close(got, tuned_out, rtol=0, atol=1e-6)


@pytest.mark.parametrize("case", [c for c in CASES if c.kind == "spandrel"], ids=lambda c: c.name)
def test_ftn_tune_on_a_spandrel_checkpoint(case, spandrel, tmp_path) -> None:
    """A real (two-step) ftn.tune on a spandrel checkpoint: alpha 0 exact, the file rebuilds its base."""
    path, _ = _checkpoint(case, spandrel, tmp_path)
    out = ftn.tune(str(path), to="noise:50", data=_photos(tmp_path / "photos"), method=case.method, iters=2, batch_size=2, patch_size=16,
                   out=tmp_path / "tuned.safetensors", progress=False, device="cpu")
    base = read_metadata(out)["tuned"]["base"]
    assert base["kind"] == "spandrel" and base["arch"] == case.arch and isinstance(base["layout"], dict)
    network, _ = load_network(path)
    model = ftn.load(out)
    x = _image(case.channels)
    with torch.no_grad():
        assert torch.equal(model(x, alpha=0.0), network(x))
        assert not torch.equal(model(x, alpha=1.0), network(x))
    photo = next((tmp_path / "photos").iterdir())
    assert main(["run", "-i", str(photo), "-o", str(tmp_path / "run.png"), "--model", str(out), "--alpha", "0.5"]) == 0
    assert Image.open(tmp_path / "run.png").size == Image.open(photo).size


@needs_dncnn
def test_published_dncnn_exports_in_its_own_layout(tmp_path) -> None:
    """DnCNN-S-25 (module.dncnn.N keys, no BatchNorm counters): the export at 0.3 is a plain pickle of
    the same keys that torch.load(weights_only=True) reads, and it computes the tuned model at 0.3."""
    path = DNCNN / "DnCNN-S-25.pth"
    network, record = load_network(path)
    assert record["kind"] == "load_base" and record["layout"]["prefix"] == "module."
    assert all(k.endswith("num_batches_tracked") for k in record["layout"]["model_only"])
    model = _tuned(network, "ftn")
    x = _image(1, 20)
    with torch.no_grad():
        tuned_out = model(x, alpha=0.3)
    out = tmp_path / "tuned.safetensors"
    ftn.save(model, out, tuned={"base": record})
    exported = tmp_path / "dncnn-s-25-at-0.3.pth"
    assert main(["export", "--model", str(out), "--alpha", "0.3", "-o", str(exported)]) == 0
    written = torch.load(exported, map_location="cpu", weights_only=True)
    original = torch.load(path, map_location="cpu", weights_only=True)
    assert list(written) == list(original) and all(k.startswith("module.dncnn.") for k in written)
    again = ftn.load_base(exported)  # the original code's reader: strip module., load strictly
    with torch.no_grad():
        torch.testing.assert_close(again(x), tuned_out, rtol=0, atol=1e-6)


def test_rename_is_recorded_and_reversed(spandrel, tmp_path) -> None:
    """spandrel renames BasicSR's RRDBNet keys to the old ESRGAN layout: the record maps them back
    exactly, zero biases (ties) included, and the wrapper's copy is written too."""
    case = next(c for c in CASES if c.name == "rrdbnet-basicsr")
    path, original = _checkpoint(case, spandrel, tmp_path)
    with torch.no_grad():
        for k, v in original["params_ema"].items():
            if k.endswith(".bias"):
                v.zero_()  # many identical tensors: matched by order
    torch.save(original, path)
    network, record = load_spandrel(path)
    layout = record["layout"]
    assert layout["wrapper"] == ["params_ema"] and layout["copies"] == ["params"]
    assert "model.0.weight" in layout["rename"] and layout["rename"]["model.0.weight"] == "conv_first.weight"
    back = to_original(network.state_dict(), layout)
    assert back.keys() == original.keys()
    for wrapper in ("params_ema", "params"):
        assert list(back[wrapper]) == list(original["params_ema"])
        for k, v in original["params_ema"].items():
            assert torch.equal(back[wrapper][k], v), k


@pytest.mark.parametrize(
    "targets, stored, base",
    [
        ([], {"a.weight": 1}, {"a.weight": 1}),
        (["a"], {"a.base.weight": 1, "a.ftn.0.weight": 2}, {"a.weight": 1}),
        (["a", "a.b"], {"a.base.b.base.w": 1, "a.base.b.level2_w": 2, "a.level2.x": 3, "c.w": 4}, {"a.b.w": 1, "c.w": 4}),
        ([""], {"base.a.w": 1, "level2_a": 2}, {"a.w": 1}),
    ],
)
def test_base_state_from_tuned(targets, stored, base) -> None:
    assert base_state_from_tuned(stored, targets) == base


def test_layout_refuses_a_transformed_tensor() -> None:
    model_state = {"w": torch.ones(2, 2)}
    with pytest.raises(ValueError, match="equals no tensor of the file"):
        describe_layout({"w": torch.zeros(2, 2)}, model_state, file=".pth", wrappers=(), prefixes=())


def _rewrite_base_record(path: Path, change: Callable[[dict], None]) -> None:
    with safe_open(str(path), framework="pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}
        meta = json.loads(f.metadata()["ftn"])
    change(meta["tuned"]["base"])
    save_file(tensors, str(path), metadata={"ftn": json.dumps(meta)})


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda r: r.update(arch="SwinIR"), "detected as 'ESRGAN'"),
        (lambda r: r.update(arch="os.system"), "has no architecture 'os.system'"),
        (lambda r: r.pop("layout"), "no recorded key layout"),
    ],
    ids=["another-arch", "not-in-registry", "no-layout"],
)
def test_a_file_never_names_code_to_run(change, message, spandrel, tmp_path) -> None:
    path, _ = _checkpoint(CASES[0], spandrel, tmp_path)
    network, record = load_network(path)
    out = tmp_path / "tuned.safetensors"
    ftn.save(_tuned(network, "ftn"), out, tuned={"base": record})
    _rewrite_base_record(out, change)
    with pytest.raises(ValueError, match=message):
        ftn.load(out)


def test_unreadable_base_stops_with_one_line(spandrel, tmp_path, capsys) -> None:
    bad = tmp_path / "mystery.pth"
    torch.save({"encoder.weight": torch.rand(4, 3, 3, 3)}, bad)
    photos = _photos(tmp_path / "photos")
    out = tmp_path / "tuned.safetensors"
    assert main(["tune", str(bad), "--to", "noise:50", "--data", str(photos), "-o", str(out), "--iters", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("ftn tune: error:") and "\n" not in err and "spandrel recognises" in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mystery.pth", "photos"]


def test_missing_spandrel_is_one_line(monkeypatch, tmp_path) -> None:
    import importlib.util
    import sys

    monkeypatch.delitem(sys.modules, "spandrel", raising=False)
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "spandrel" else real(name, *a))
    with pytest.raises(ValueError, match=r"pip install --no-deps 'spandrel>=0.4,<0.5'"):
        import_spandrel()
    bad = tmp_path / "mystery.pth"
    torch.save({"encoder.weight": torch.rand(4, 3, 3, 3)}, bad)
    with pytest.raises(ValueError, match="not installed"):
        load_network(bad)


def test_export_refuses_pth_without_an_original_layout(tmp_path, capsys) -> None:
    net = ftn.build_arch("dncnn", size="mini")
    out = tmp_path / "tuned.safetensors"
    ftn.save(ftn.attach(net, "ftn"), out)
    assert main(["export", "--model", str(out), "--alpha", "0.5", "-o", str(tmp_path / "x.pth")]) == 2
    assert "original checkpoint layout" in capsys.readouterr().err
    assert not (tmp_path / "x.pth").exists()


def test_the_torchvision_stub_is_gone_after_the_import(spandrel) -> None:
    import importlib.util
    import sys

    if importlib.util.find_spec("torchvision") is None:
        assert "torchvision" not in sys.modules and "torchvision.transforms.functional" not in sys.modules


def test_a_tensor_spandrel_changed_keeps_spandrels_own_keys(spandrel, tmp_path, monkeypatch, capsys) -> None:
    """Where the loaded tensors cannot be matched to the file's, the record keeps spandrel's own keys
    (it reads them back), the tuned file still rebuilds, and the export says which layout it wrote."""
    import ftn.external as external

    def unmatched(*args, **kwargs):
        raise external.LayoutError("x: the network's tensor 'w' equals no tensor of the file")

    monkeypatch.setattr(external, "describe_layout", unmatched)
    path, original = _checkpoint(CASES[0], spandrel, tmp_path)
    network, record = load_network(path)
    assert record["layout"]["wrapper"] == [] and "spandrel's own key layout" in record["layout"]["note"]
    model = _tuned(network, "ftn")
    out = tmp_path / "tuned.safetensors"
    ftn.save(model, out, tuned={"base": record})
    x = _image(3)
    with torch.no_grad():
        assert torch.equal(ftn.load(out)(x, alpha=0.3), model(x, alpha=0.3))
    exported = tmp_path / "export.pth"
    assert main(["export", "--model", str(out), "--alpha", "0.3", "-o", str(exported)]) == 0
    assert "spandrel's own key layout" in capsys.readouterr().out
    assert list(torch.load(exported, weights_only=True)) == list(original["params_ema"])


def test_export_layout_ftn_keeps_ftns_own_file(spandrel, tmp_path, capsys) -> None:
    path, _ = _checkpoint(next(c for c in CASES if c.name == "rrdbnet-basicsr"), spandrel, tmp_path)
    network, record = load_network(path)
    model = _tuned(network, "ftn")
    out = tmp_path / "tuned.safetensors"
    ftn.save(model, out, tuned={"base": record})
    exported = tmp_path / "export.safetensors"
    assert main(["export", "--model", str(out), "--alpha", "0.3", "--layout", "ftn", "-o", str(exported)]) == 0
    assert "ftn's layout" in capsys.readouterr().out
    x = _image(3)
    with torch.no_grad():
        torch.testing.assert_close(ftn.load(exported)(x), model(x, alpha=0.3), rtol=0, atol=1e-6)


def test_a_half_precision_checkpoint_is_written_back_in_half(spandrel, tmp_path) -> None:
    """The network computes in float32; the record keeps the file's float16, so the export is half again."""
    torch.manual_seed(0)
    state = {k: v.half() if v.is_floating_point() else v for k, v in _esrgan(spandrel).state_dict().items()}
    path = tmp_path / "half.pth"
    torch.save({"params_ema": state}, path)
    network, record = load_network(path)
    assert next(network.parameters()).dtype == torch.float32
    assert set(record["layout"]["dtypes"].values()) == {"float16"}
    back = to_original(network.state_dict(), record["layout"])["params_ema"]
    assert list(back) == list(state)
    for key, value in state.items():
        assert back[key].dtype == value.dtype and torch.equal(back[key], value), key
