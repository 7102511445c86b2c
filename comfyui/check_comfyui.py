"""Check ftn's nodes inside a running ComfyUI: workflows sent to its HTTP API, outputs compared with ftn.

Not part of CI (ComfyUI is not installed with ftn: it declares torchvision). Start ComfyUI with the
nodes installed (``comfyui/README.md``), then, in ftn's own environment::

    python comfyui/check_comfyui.py --comfyui /path/to/ComfyUI --url http://127.0.0.1:8188

It writes its inputs into ComfyUI's ``input/`` and ``models/`` folders (files named ``ftn-check*``),
runs the workflows below and prints ComfyUI's status for each and the largest difference from ftn
called directly (SaveImage writes 8-bit PNGs: 1/255 is rounding). Exit status 1 if a check fails.

1. Load Image (RGBA) -> FTN Load Model (denoise) -> FTN Apply at level 50, with and without the
   picture's mask (transparent pixels: the setting; opaque ones: alpha 0); FTN Export Plain Model.
2. A two-axis model in ``models/ftn`` (the loader's drop-down) at ``sigma=10,quality=50``.
3. The same model given only the alpha number: ComfyUI reports FTN Apply's one-line ValueError.
4. sr-pd-x4 exported at alpha 0.3, read back by ComfyUI's own Load Upscale Model and Upscale Image
   (using Model) (spandrel), next to FTN Apply at alpha 0.3.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

import ftn
from ftn.integrations.comfyui import FTNApply, FTNLoadModel
from ftn.levels import with_calibration
from ftn.methods.axes import AxisSpec, attach_axes

SAMPLE = Path(__file__).resolve().parents[1] / "samples" / "amber-noisy-sigma50.png"
TOLERANCE = 1 / 255 + 1e-6


class Comfy:
    """The few calls of ComfyUI's HTTP API used here: queue a workflow, wait for its history."""

    def __init__(self, url: str, root: Path) -> None:
        self.url, self.root = url.rstrip("/"), root

    def _call(self, path: str, body: dict | None = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=30) as answer:
                return json.load(answer)
        except urllib.error.HTTPError as err:  # a workflow refused at validation: its reasons
            return {"refused": json.loads(err.read() or b"{}")}

    def run(self, prompt: dict, timeout: float = 600) -> dict:
        queued = self._call("/prompt", {"prompt": prompt})
        if "prompt_id" not in queued:
            return {"status": {"status_str": "refused", "messages": []}, "refused": queued.get("refused")}
        pid, end = queued["prompt_id"], time.monotonic() + timeout
        while time.monotonic() < end:
            history = self._call(f"/history/{pid}")
            if pid in history and history[pid]["status"].get("completed") is not None:
                return history[pid]
            time.sleep(0.5)
        raise TimeoutError(f"ComfyUI did not finish the workflow in {timeout:.0f} s")

    def saved(self, history: dict, node: str) -> np.ndarray:
        image = history["outputs"][node]["images"][0]
        path = self.root / "output" / image.get("subfolder", "") / image["filename"]
        return np.asarray(Image.open(path)).astype(np.float32) / 255


def _error(history: dict) -> str:
    for kind, message in history["status"].get("messages", []):
        if kind == "execution_error":
            return f"{message['exception_type']}: {message['exception_message'].strip()}"
    return ""


def _direct(model: str, path: Path, **widgets: Any) -> np.ndarray:
    """FTN Apply called here, in ftn's environment, rounded as SaveImage rounds."""
    loaded, _ = FTNLoadModel().load(model, "cpu")
    image = torch.from_numpy(np.asarray(Image.open(path).convert("RGB")).astype(np.float32) / 255)[None]
    with torch.inference_mode():
        out = FTNApply().apply(loaded, image, **widgets)[0][0].numpy()
    return np.clip(np.round(out * 255), 0, 255) / 255


def _inputs(root: Path) -> dict[str, Path]:
    """A crop of the noisy sample (97 x 81: sides no network pads to), the same with a transparent
    left half, a small crop, and a two-axis model in models/ftn."""
    noisy = Image.open(SAMPLE).convert("RGB").crop((10, 20, 107, 101))
    paths = {"rgb": root / "input" / "ftn-check.png", "rgba": root / "input" / "ftn-check-rgba.png",
             "small": root / "input" / "ftn-check-small.png", "axes": root / "models" / "ftn" / "ftn-check-axes.safetensors"}
    paths["axes"].parent.mkdir(parents=True, exist_ok=True)
    noisy.save(paths["rgb"])
    opacity = np.full((81, 97), 255, np.uint8)
    opacity[:, :48] = 0
    rgba = noisy.convert("RGBA")
    rgba.putalpha(Image.fromarray(opacity))
    rgba.save(paths["rgba"])
    noisy.crop((0, 0, 40, 36)).save(paths["small"])
    torch.manual_seed(1)
    net = ftn.build_arch("adafm_net", size="mini", channels=8, blocks=1, image_skip=True)
    model = attach_axes(net, "ftn", [AxisSpec("sigma", 3, levels=(5, 25, 50)), AxisSpec("quality", 2, levels=(90, 10))], groups=4)
    with torch.no_grad():
        for p in model.tuner_parameters():
            p.add_(0.02 * torch.randn(p.shape))
    model.metadata = with_calibration(model.levels.replace_in({"task": "restore"}),
                                      {"levels": [5, 10, 25, 50], "alphas": [0, 0.4, 1, 2]}, "sigma")
    ftn.save(model.eval(), paths["axes"])
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--comfyui", type=Path, required=True, help="ComfyUI's folder (its input/, models/, output/)")
    parser.add_argument("--url", default="http://127.0.0.1:8188")
    args = parser.parse_args(argv)
    comfy, paths = Comfy(args.url, args.comfyui), _inputs(args.comfyui)
    failures = 0

    def report(name: str, ok: bool, words: str) -> None:
        nonlocal failures
        failures += not ok
        print(f"{'ok  ' if ok else 'FAIL'} {name}: {words}")

    load = {"class_type": "FTNLoadModel", "inputs": {"model": "denoise", "device": "auto"}}
    apply = {"ftn_model": ["2", 0], "image": ["1", 0], "alpha": 0.5, "level": "50"}
    history = comfy.run({
        "1": {"class_type": "LoadImage", "inputs": {"image": paths["rgba"].name}}, "2": load,
        "3": {"class_type": "FTNApply", "inputs": {**apply, "mask": ["1", 1]}},
        "4": {"class_type": "SaveImage", "inputs": {"images": ["3", 0], "filename_prefix": "ftn-check-masked"}},
        "5": {"class_type": "FTNApply", "inputs": apply},
        "6": {"class_type": "SaveImage", "inputs": {"images": ["5", 0], "filename_prefix": "ftn-check-whole"}},
        "7": {"class_type": "FTNExportPlainModel", "inputs": {"ftn_model": ["2", 0], "alpha": 0.5, "level": "50",
                                                              "filename": "ftn/ftn-check-denoise-s50.safetensors"}},
    })
    if history["status"]["status_str"] != "success":
        report("1 denoise at level 50", False, f"{history['status']['status_str']} {_error(history)} {history.get('refused', '')}")
    else:
        mask = torch.zeros(1, 81, 97)
        mask[..., :48] = 1  # Load Image's MASK: 1 where the picture is transparent
        whole = abs(comfy.saved(history, "6") - _direct("denoise", paths["rgb"], alpha=0.5, level="50")).max()
        masked = abs(comfy.saved(history, "4") - _direct("denoise", paths["rgb"], alpha=0.5, level="50", mask=mask)).max()
        report("1 denoise at level 50", max(whole, masked) <= TOLERANCE,
               f"whole image {whole:.4f}, with the picture's mask {masked:.4f} from ftn; export: "
               + history["outputs"]["7"]["text"][0])

    history = comfy.run({
        "1": {"class_type": "LoadImage", "inputs": {"image": paths["small"].name}},
        "2": {"class_type": "FTNLoadModel", "inputs": {"model": paths["axes"].name, "device": "cpu"}},
        "3": {"class_type": "FTNApply", "inputs": {**apply, "level": "sigma=10,quality=50"}},
        "4": {"class_type": "SaveImage", "inputs": {"images": ["3", 0], "filename_prefix": "ftn-check-axes"}},
    })
    ok = history["status"]["status_str"] == "success"
    worst = abs(comfy.saved(history, "4") - _direct(str(paths["axes"]), paths["small"], level="sigma=10,quality=50")).max() if ok else 1.0
    report("2 two-axis model from models/ftn", ok and worst <= TOLERANCE, f"{worst:.4f} from ftn {_error(history)}")

    history = comfy.run({
        "1": {"class_type": "LoadImage", "inputs": {"image": paths["small"].name}},
        "2": {"class_type": "FTNLoadModel", "inputs": {"model": paths["axes"].name, "device": "cpu"}},
        "3": {"class_type": "FTNApply", "inputs": {"ftn_model": ["2", 0], "image": ["1", 0], "alpha": 0.5}},
        "4": {"class_type": "SaveImage", "inputs": {"images": ["3", 0], "filename_prefix": "ftn-check-refused"}},
    })
    said = _error(history)
    report("3 a refusal reaches ComfyUI in one line", said.startswith("ValueError: this model has 2 axes") and "\n" not in said, said)

    exported = comfy.run({"2": {**load, "inputs": {"model": "sr-pd-x4", "device": "auto"}},
                          "7": {"class_type": "FTNExportPlainModel",
                                "inputs": {"ftn_model": ["2", 0], "alpha": 0.3, "filename": "ftn/ftn-check-esrgan.safetensors"}}})
    if exported["status"]["status_str"] != "success":
        report("4 export read by ComfyUI's upscaler", False, _error(exported))
        return 1 if failures else 0
    upscalers = args.comfyui / "models" / "upscale_models"
    upscalers.mkdir(parents=True, exist_ok=True)
    shutil.copy(args.comfyui / "output" / "ftn" / "ftn-check-esrgan.safetensors", upscalers / "ftn-check-esrgan.safetensors")
    history = comfy.run({
        "1": {"class_type": "LoadImage", "inputs": {"image": paths["small"].name}},
        "8": {"class_type": "UpscaleModelLoader", "inputs": {"model_name": "ftn-check-esrgan.safetensors"}},
        "9": {"class_type": "ImageUpscaleWithModel", "inputs": {"upscale_model": ["8", 0], "image": ["1", 0]}},
        "10": {"class_type": "SaveImage", "inputs": {"images": ["9", 0], "filename_prefix": "ftn-check-upscaler"}},
        "2": {**load, "inputs": {"model": "sr-pd-x4", "device": "auto"}},
        "3": {"class_type": "FTNApply", "inputs": {"ftn_model": ["2", 0], "image": ["1", 0], "alpha": 0.3}},
        "4": {"class_type": "SaveImage", "inputs": {"images": ["3", 0], "filename_prefix": "ftn-check-sr"}},
    })
    ok = history["status"]["status_str"] == "success"
    worst = abs(comfy.saved(history, "10") - comfy.saved(history, "4")).max() if ok else 1.0
    report("4 export read by ComfyUI's upscaler (spandrel)", ok and worst <= TOLERANCE,
           f"Upscale Image (using Model) vs FTN Apply at alpha 0.3: {worst:.4f} {_error(history)}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
