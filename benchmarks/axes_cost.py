"""What D axes cost per pixel (issue [4/6]): convolutions per layer and time, beside the plain network.

    python -m benchmarks.axes_cost              # about two minutes on 2 cores; writes docs/axes-cost.md

Eq. 3 of the paper, generalised to D axes (:mod:`ftn.methods.axes`): with a per-pixel map on every
axis a tuned layer runs one convolution with the blended kernel plus one per active anchor delta,
so at most 1 + D for two-anchor axes; a fixed setting is one blended kernel, the plain network's cost.
This script counts the convolutions' multiply-accumulates *per tuned layer* with
``torch.utils.flop_counter`` on a real forward (after a warm-up, so the cached kernels and deltas are
not counted again: they depend on the weights only, not on the image) and divides by the same layer
of the plain network. It also times the forwards, interleaved in one run so that the machine's load
falls on all of them alike, and reports median ratios to the plain network.
"""

from __future__ import annotations

import argparse
import copy
import datetime
import platform
import statistics
import time
from pathlib import Path

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import ftn
from ftn.methods.axes import AxisSpec

ROOT = Path(__file__).resolve().parents[1]

#: (label, axes as (name, anchors), the control: per axis a number or a map's (low, high) range)
CASES: list[tuple[str, list[tuple[str, int]], dict[str, float | tuple[float, float]]]] = [
    ("D=1, fixed setting", [("sigma", 2)], {"sigma": 0.4}),
    ("D=1, map", [("sigma", 2)], {"sigma": (0.0, 1.0)}),
    ("D=2, fixed setting", [("sigma", 2), ("quality", 2)], {"sigma": 0.4, "quality": 0.7}),
    ("D=2, map on sigma, number on quality", [("sigma", 2), ("quality", 2)], {"sigma": (0.0, 1.0), "quality": 0.7}),
    ("D=2, maps on both", [("sigma", 2), ("quality", 2)], {"sigma": (0.0, 1.0), "quality": (0.0, 1.0)}),
    ("D=3, maps on all", [("sigma", 2), ("quality", 2), ("blur", 2)],
     {"sigma": (0.0, 1.0), "quality": (0.0, 1.0), "blur": (0.0, 1.0)}),
    ("one axis, 5 anchors, map within one segment [1.2, 1.8]", [("sigma", 5)], {"sigma": (1.2, 1.8)}),
    ("one axis, 5 anchors, map over [0, 4]", [("sigma", 5)], {"sigma": (0.0, 4.0)}),
]


def setting_for(control: dict[str, float | tuple[float, float]], size: int, seed: int = 0) -> dict:
    """Numbers stay numbers; a (low, high) range becomes a smooth random (1, 1, size, size) map spanning it."""
    g = torch.Generator().manual_seed(seed)
    out: dict[str, float | torch.Tensor] = {}
    for name, value in control.items():
        if isinstance(value, tuple):
            low, high = value
            coarse = torch.rand(1, 1, 8, 8, generator=g)
            smooth = nn.functional.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)
            smooth = (smooth - smooth.min()) / (smooth.max() - smooth.min())  # spans the range exactly
            out[name] = low + (high - low) * smooth
        else:
            out[name] = float(value)
    return out


def conv_macs_per_module(forward) -> dict[str, int]:
    """MACs of the convolutions, per module name (a module's count includes its children's), and the
    whole forward's under ``"Global"``."""
    counter = FlopCounterMode(display=False)
    with counter, torch.inference_mode():
        forward()
    out: dict[str, int] = {}
    for module, ops in counter.get_flop_counts().items():
        flops = sum(n for op, n in ops.items() if "convolution" in str(op))
        if flops:
            out[module] = flops // 2
    return out


def per_layer_ratios(plain: dict[str, int], tuned: dict[str, int], layers: list[str]) -> list[float]:
    """For each tuned layer: its MACs in the tuned model / its MACs in the plain network (matched by name)."""
    ratios = []
    for name in layers:
        mine = [v for k, v in tuned.items() if k == name or k.endswith("." + name)]
        base = [v for k, v in plain.items() if k == name or k.endswith("." + name)]
        if mine and base:
            ratios.append(max(mine) / max(base))
    return ratios


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256, help="image height and width (default 256)")
    parser.add_argument("--repeats", type=int, default=7, help="timed forwards per case (default 7, interleaved)")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "axes-cost.md")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    # The shipped denoise network's architecture (AdaFM-Net mini); weights do not change the cost.
    plain = ftn.build_arch("adafm_net", size="mini", in_channels=3, out_channels=3, image_skip=True).eval()
    x = torch.rand(1, 3, args.size, args.size)

    models, settings = [], []
    for _label, axes, control in CASES:
        model = ftn.attach_axes(copy.deepcopy(plain), "ftn", [AxisSpec(n, k) for n, k in axes], groups=16).eval()
        with torch.no_grad():  # move every tuner off the identity, so no delta is zero by construction
            for p in model.tuner_parameters():
                p.add_(0.01 * torch.randn_like(p))
        models.append(model)
        settings.append(setting_for(control, args.size))

    plain_macs = conv_macs_per_module(lambda: plain(x))
    rows = []
    for (label, axes, _control), model, setting in zip(CASES, models, settings):
        with torch.inference_mode():
            model(x, alpha=setting)  # warm-up: fills the blended-kernel and delta caches
        tuned_macs = conv_macs_per_module(lambda m=model, s=setting: m(x, alpha=s))
        layers = [name for name, _ in model.axes_layers()]
        ratios = per_layer_ratios(plain_macs, tuned_macs, layers)
        deltas_bound = sum(k - 1 for _, k in axes)
        rows.append({"label": label, "layers": len(ratios), "max": max(ratios), "mean": statistics.mean(ratios),
                     "total": tuned_macs["Global"] / plain_macs["Global"], "bound": 1 + deltas_bound,
                     "d": len(axes)})

    times: dict[int, list[float]] = {i: [] for i in range(-1, len(CASES))}
    with torch.inference_mode():
        for _ in range(args.repeats):  # interleaved: load on the machine falls on every case alike
            for i in range(-1, len(CASES)):
                run = (lambda: plain(x)) if i < 0 else (lambda m=models[i], s=settings[i]: m(x, alpha=s))
                start = time.perf_counter()
                run()
                times[i].append(time.perf_counter() - start)
    plain_time = statistics.median(times[-1])
    for i, row in enumerate(rows):
        row["time"] = statistics.median(times[i]) / plain_time

    lines = [
        "# What D axes cost per pixel",
        "",
        f"Generated by `python -m benchmarks.axes_cost` on {datetime.date.today()} ({platform.machine()}, "
        f"{torch.get_num_threads()} torch threads, torch {torch.__version__}); a {args.size} x {args.size} RGB image "
        "through the shipped `denoise` network's architecture (AdaFM-Net mini, 32 channels, 8 blocks) with "
        "FTN-gc16 tuners on every conv but the last.",
        "",
        "**Convolutions per tuned layer** are the convolutions' multiply-accumulates in that layer, counted by "
        "`torch.utils.flop_counter` on a real forward after a warm-up (the blended kernel and the deltas "
        "depend on the weights only and are cached), divided by the same layer's in the plain network. "
        "**Bound** is Eq. 3 generalised: 1 + the anchor deltas a map can touch (1 + D for two-anchor axes). "
        "**Time** is the median of "
        f"{args.repeats} forwards, interleaved with the plain network's in one run, as a ratio to it.",
        "",
        "| case | tuned layers | convolutions per tuned layer (max) | bound | whole network, MACs / plain | time / plain |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(f"| {row['label']} | {row['layers']} | {row['max']:.2f} | {row['bound']} | {row['total']:.2f} "
                     f"| {row['time']:.2f} |")
    over = [r["label"] for r in rows if r["max"] > r["bound"] + 1e-9]
    lines += [
        "",
        "Every case is at or under its bound." if not over else f"Over the bound: {', '.join(over)}.",
        "A fixed setting (numbers on every axis) runs one blended kernel per layer: the plain network's "
        "convolutions. A map on a 5-anchor axis costs one convolution per anchor delta its range touches "
        "(a pixel uses at most two, but a convolution covers the whole map), so a map inside one segment "
        "costs 1 + 2 and a map over all of [0, 4] costs 1 + 4. Time ratios carry the elementwise work "
        "(the hat weights and the multiply-adds of each term) on top of the convolutions, and this "
        "machine's load.",
        "",
    ]
    args.out.write_text("\n".join(lines))
    print("\n".join(lines))
    return 0 if not over else 1


if __name__ == "__main__":
    raise SystemExit(main())
