"""Model files: safetensors + JSON metadata round trips; pickles are never executed."""

from __future__ import annotations

import json
import os
import pickle

import pytest
import torch
from safetensors.torch import save_file

import ftn
from ftn.io import read_metadata, read_state_dict


def _tunable(method: str = "ftn", **options) -> ftn.TunableModel:
    torch.manual_seed(0)
    model = ftn.attach(ftn.build_arch("adafm_net", size="mini", image_skip=True), method, **options).eval()
    with torch.no_grad():
        for p in model.tuner_parameters():
            p.add_(0.02 * torch.randn_like(p))
    return model


def test_registered_architecture_rebuilds_from_metadata(tmp_path) -> None:
    model = _tunable(groups=16)
    path = tmp_path / "m.safetensors"
    ftn.save(model, path, task="denoise", levels=[{"sigma": 20}, {"sigma": 80}])
    meta = read_metadata(path)
    assert meta["arch"] == "adafm_net" and meta["method"] == "ftn" and meta["method_options"]["groups"] == 16
    loaded = ftn.load(path).eval()
    x = torch.rand(1, 3, 24, 24)
    assert torch.equal(loaded(x, alpha=0.3), model(x, alpha=0.3))
    assert loaded.metadata == {"task": "denoise", "levels": [{"sigma": 20}, {"sigma": 80}]}


def test_exported_plain_model_round_trips(tmp_path) -> None:
    model = _tunable("dni")
    plain = model.export(0.7)
    path = tmp_path / "plain.safetensors"
    ftn.save(plain, path, alpha=0.7)
    loaded = ftn.load(path)
    assert not isinstance(loaded, ftn.TunableModel)
    x = torch.rand(1, 3, 20, 20)
    assert torch.equal(loaded(x), plain(x))
    assert loaded.metadata["alpha"] == 0.7


def test_load_tunable_returns_a_tunable_model_and_refuses_the_rest(tmp_path) -> None:
    from ftn.io import load_tunable

    tunable, plain, garbage = (tmp_path / n for n in ("t.safetensors", "p.safetensors", "g.safetensors"))
    ftn.save(_tunable("adafm", kernel_size=1), tunable, task="denoise")
    ftn.save(_tunable("dni").export(0.5), plain)
    garbage.write_bytes(b"\x00" * 64)
    assert isinstance(load_tunable(tunable), ftn.TunableModel)
    axes = tmp_path / "axes.safetensors"  # several axes: a multi-axis model, also with alphas to set
    ftn.save_axes(ftn.attach_axes(ftn.build_arch("adafm_net", size="mini", channels=8, blocks=1), "ftn",
                                  [ftn.AxisSpec("sigma", 3), "quality"]), axes, task="denoise")
    assert isinstance(load_tunable(axes), ftn.AxesModel)
    with pytest.raises(ValueError, match="plain network with no alpha"):
        load_tunable(plain)
    with pytest.raises(ValueError, match="not a safetensors model file") as err:
        load_tunable(garbage)
    assert "\n" not in str(err.value)
    with pytest.raises(FileNotFoundError):
        load_tunable(tmp_path / "missing.safetensors")


def test_reserved_and_unserialisable_metadata_are_refused(tmp_path) -> None:
    model = _tunable()
    with pytest.raises(ValueError, match="written by ftn itself"):
        ftn.save(model, tmp_path / "a.safetensors", method="x")
    with pytest.raises(TypeError, match="not JSON-serialisable"):
        ftn.save(model, tmp_path / "b.safetensors", levels={1, 2})
    assert not list(tmp_path.iterdir()), "a failed save must leave no file behind"


def test_mismatched_tensors_are_named(tmp_path) -> None:
    model = _tunable()
    path = tmp_path / "m.safetensors"
    ftn.save(model, path)
    tensors = read_state_dict(path)
    meta = read_metadata(path)
    tensors.pop("conv_first.base.weight")
    tensors["conv_last.base.bias"] = torch.zeros(5)
    broken = tmp_path / "broken.safetensors"
    save_file(tensors, broken, metadata={"ftn": json.dumps(meta)})
    with pytest.raises(ValueError, match=r"missing \['conv_first.base.weight'\].*shape of 'conv_last.base.bias'"):
        ftn.load(broken)


def test_unknown_method_and_foreign_files_are_refused(tmp_path) -> None:
    model = _tunable()
    path = tmp_path / "m.safetensors"
    ftn.save(model, path)
    meta = read_metadata(path)
    meta["method"] = "magic"
    odd = tmp_path / "odd.safetensors"
    save_file(read_state_dict(path), odd, metadata={"ftn": json.dumps(meta)})
    with pytest.raises(ValueError, match="unknown method 'magic'"):
        ftn.load(odd)
    foreign = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(1)}, foreign)
    with pytest.raises(ValueError, match="not an ftn model file"):
        ftn.load(foreign)


class _Exploit:
    """Unpickling this would create a file: proof that code ran."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_a_malicious_pickle_is_refused_without_running(tmp_path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    with open(path, "wb") as f:
        pickle.dump({"state_dict": _Exploit(str(marker))}, f, protocol=2)
    with pytest.raises(ValueError, match="weights_only=True"):
        read_state_dict(path)
    assert not marker.exists()


def test_plain_pth_state_dicts_are_read(tmp_path) -> None:
    path = tmp_path / "ok.pth"
    torch.save({"weight": torch.ones(2)}, path)
    assert torch.equal(read_state_dict(path)["weight"], torch.ones(2))


# -- load_base: foreign restoration checkpoints ------------------------------------------------------


def _rrdbnet(seed: int = 0, **options) -> torch.nn.Module:
    torch.manual_seed(seed)
    return ftn.build_arch("rrdbnet", **{"size": "mini", "channels": 8, "blocks": 2, "growth": 4, **options}).eval()


def _same_output(a: torch.nn.Module, b: torch.nn.Module, channels: int = 3) -> bool:
    x = torch.rand(1, channels, 8, 12)
    with torch.no_grad():
        return torch.equal(a.eval()(x), b.eval()(x))


@pytest.mark.parametrize("prefix", ["", "module."])
@pytest.mark.parametrize("wrapper", [None, "params", "params_ema", "state_dict", "model", "net"])
def test_load_base_unwraps_checkpoints_and_strips_prefixes(tmp_path, wrapper, prefix) -> None:
    net = _rrdbnet()
    state = {prefix + k: v for k, v in net.state_dict().items()}
    payload: dict = state if wrapper is None else {wrapper: state, "iter": 1000}
    if wrapper == "params_ema":  # BasicSR keeps both; the EMA weights are the ones to use
        payload["params"] = {prefix + k: v for k, v in _rrdbnet(seed=1).state_dict().items()}
    path = tmp_path / "ckpt.pth"
    torch.save(payload, path)
    assert _same_output(ftn.load_base(path), net)


def test_load_base_reads_safetensors(tmp_path) -> None:
    net = _rrdbnet()
    path = tmp_path / "ckpt.safetensors"
    save_file({"module." + k: v.contiguous() for k, v in net.state_dict().items()}, path)
    assert _same_output(ftn.load_base(path), net)


@pytest.mark.parametrize("scale", [1, 2, 4])
@pytest.mark.parametrize("channels", [3, 1])
def test_load_base_infers_rrdbnet_sizes_from_the_keys(tmp_path, scale, channels) -> None:
    options = {"channels": 12, "blocks": 3, "growth": 5, "scale": scale, "in_channels": channels, "out_channels": channels}
    net = _rrdbnet(**options)
    path = tmp_path / "esrgan.pth"
    torch.save({"params_ema": net.state_dict()}, path)
    loaded = ftn.load_base(path)
    assert {k: loaded.arch_options[k] for k in options} == options
    assert _same_output(loaded, net, channels)
    assert isinstance(ftn.attach(loaded, "ftn"), ftn.TunableModel)


def test_load_base_builds_a_named_architecture(tmp_path) -> None:
    torch.manual_seed(0)
    net = ftn.build_arch("adafm_net", size="mini", channels=8, blocks=2)
    path = tmp_path / "adafm.pth"
    torch.save({"state_dict": net.state_dict()}, path)
    assert _same_output(ftn.load_base(path, "adafm_net", size="mini", channels=8, blocks=2), net)
    with pytest.raises(ValueError, match=r"cannot tell the architecture .* pass arch="):
        ftn.load_base(path)


@pytest.mark.parametrize(
    "change,message",
    [
        (lambda s: s.pop("conv_last.bias"), r"missing \['conv_last.bias'\]"),
        (lambda s: s.update({"extra.weight": torch.zeros(1)}), r"unexpected \['extra.weight'\]"),
        (lambda s: s.update({"conv_hr.bias": torch.zeros(7)}), r"mis-shaped \['conv_hr.bias \(7,\), network \(8,\)'\]"),
        (lambda s: s.update({"conv_hr.bias": "not a tensor"}), r"\['conv_hr.bias'\] are not tensors"),
    ],
    ids=["missing", "unexpected", "mis-shaped", "not-a-tensor"],
)
def test_load_base_names_the_keys_that_do_not_fit(tmp_path, change, message) -> None:
    state = dict(_rrdbnet().state_dict())
    change(state)
    path = tmp_path / "bad.pth"
    torch.save(state, path)
    with pytest.raises(ValueError, match=message) as info:
        ftn.load_base(path)
    assert "\n" not in str(info.value)


def test_load_base_refuses_a_pickle_payload_without_running_it(tmp_path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    with open(path, "wb") as f:
        pickle.dump({"params": {"conv_first.weight": _Exploit(str(marker))}}, f, protocol=2)
    with pytest.raises(ValueError, match="weights_only=True"):
        ftn.load_base(path)
    assert not marker.exists()


@pytest.mark.parametrize("umask", [0o022, 0o027, 0o002])
def test_models_and_checkpoints_are_written_with_the_umasks_mode(tmp_path, umask) -> None:
    """Not the 0600 of tempfile.mkstemp (issue 18, item 8): a model is shared like any other file."""
    from ftn.train import save_checkpoint

    model = _tunable()
    previous = os.umask(umask)
    try:
        ftn.save(model, tmp_path / "m.safetensors")
        save_checkpoint(tmp_path / "c.safetensors", model=model.model, optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
                        scheduler=None, step=0, elapsed_s=0.0, config={})
        (tmp_path / "plain.txt").write_text("reference")
    finally:
        os.umask(previous)
    modes = {p.name: p.stat().st_mode & 0o777 for p in tmp_path.iterdir()}
    assert modes == {"m.safetensors": 0o666 & ~umask, "c.safetensors": 0o666 & ~umask, "plain.txt": 0o666 & ~umask}
