"""Chained or from the base? How the anchors of one axis should be reached, measured (issue [4/6]).

    python -m benchmarks.anchors                 # about 15 minutes on 2 cores; writes docs/anchors.md
    python -m benchmarks.anchors --steps 2 --images 2 --out /tmp/anchors.md   # a smoke run

One axis ``sigma`` with anchors 20 (the base network: the shipped ``denoise`` at alpha 0), 35, 50 and
80, FTN-gc16 tuners, trained anchor after anchor with the same steps, batch and seed in two modes
(:mod:`ftn.methods.axes`):

* **from the base**: W_k = FTN_k(f), every anchor's FTN starts from the base kernel f;
* **chained**: W_k = FTN_k(W_{k-1}), each anchor's FTN starts from the previous anchor's kernel.

Measured on CBSD68 centre crops with photo-true noise (clipped, 8-bit), the same noisy images for both:
PSNR at each anchor (alpha = k at sigma_k), between anchors (the best alpha in the segment, on a
0.1 grid, at the middle level), and smoothness across an anchor: the *kink* of the output path
y(alpha) at alpha = k, ``|y(k+h) - 2 y(k) + y(k-h)| / |y(k+h) - y(k-h)|`` (0 for a straight path, 1
when the path turns by 90 degrees; h = 0.1), and of PSNR(alpha) the change of slope there.
"""

from __future__ import annotations

import argparse
import copy
import datetime
import json
import statistics
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
TRAIN = SHARED / "data" / "train" / "BSD432"
TEST = SHARED / "data" / "test" / "CBSD68"
ANCHORS = (20.0, 35.0, 50.0, 80.0)
H = 0.1


def _task():
    from ftn.tasks.denoise import Denoise

    return Denoise(clip=True, quantize=True)


def build(base: torch.nn.Module, chained: bool):
    """The base with one ``sigma`` axis of len(ANCHORS) anchors, FTN-gc16 tuners at the identity."""
    import ftn
    from ftn.methods.axes import AxisSpec

    return ftn.attach_axes(copy.deepcopy(base), "ftn", [AxisSpec("sigma", len(ANCHORS), chained=chained)], groups=16)


def train_anchors(model, steps: int, batch: int, patch: int, seed: int, log) -> list[float]:
    """Train anchor 1, 2, ... in turn: only that anchor's tuners learn, at alpha = k, on sigma_k.
    Returns the seconds each anchor took."""
    from ftn.data.datasets import PatchSampler

    sampler = PatchSampler(TRAIN, _task(), ANCHORS[1], patch_size=patch, seed=seed)
    seconds = []
    for k in range(1, len(ANCHORS)):
        sampler.level = ANCHORS[k]
        params = model.tuner_parameters(axis="sigma", anchor=k)
        for p in model.parameters():
            p.requires_grad_(False)
        for p in params:
            p.requires_grad_(True)
        optimiser = torch.optim.Adam(params, lr=1e-4)
        model.train()
        start = time.perf_counter()
        for step in range(steps):
            degraded, clean = sampler.batch(step, batch)
            loss = torch.nn.functional.l1_loss(model(degraded, alpha={"sigma": float(k)}), clean)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            if step % max(1, steps // 5) == 0 or step == steps - 1:
                log(f"  anchor {k} (sigma {ANCHORS[k]:g}) step {step + 1}/{steps} loss {loss.item():.4f}")
        seconds.append(time.perf_counter() - start)
        model.eval()
    return seconds


def test_images(images: int, crop: int, seed: int = 0) -> dict[float, list[tuple[torch.Tensor, torch.Tensor]]]:
    """(noisy, clean) centre crops of the first ``images`` CBSD68 images per test level, seeded per image."""
    from ftn.data.datasets import EvalSet

    levels = sorted({*ANCHORS, *((a + b) / 2 for a, b in zip(ANCHORS, ANCHORS[1:]))})
    out = {}
    for level in levels:
        pairs = []
        for _, noisy, clean in EvalSet(TEST, _task(), level, seed=seed, limit=images):
            _, h, w = clean.shape
            top, left = max(0, (h - crop) // 2), max(0, (w - crop) // 2)
            pairs.append((noisy[None, :, top:top + crop, left:left + crop], clean[None, :, top:top + crop, left:left + crop]))
        out[level] = pairs
    return out


def psnr_at(model, pairs, alpha: float) -> tuple[float, list[torch.Tensor]]:
    """Mean PSNR over the pairs at ``alpha`` and the outputs (clipped to [0, 1])."""
    from ftn.eval.metrics import psnr

    outs, values = [], []
    with torch.inference_mode():
        for noisy, clean in pairs:
            y = model(noisy, alpha={"sigma": alpha}).clamp(0, 1)
            outs.append(y)
            values.append(psnr(y, clean))
    return statistics.mean(values), outs


def evaluate(model, sets) -> dict:
    """PSNR at the anchors, the best alpha between them, and the kinks at the inner anchors."""
    result: dict = {"anchors": {}, "between": {}, "kinks": {}}
    for k, level in enumerate(ANCHORS):
        result["anchors"][level] = psnr_at(model, sets[level], float(k))[0]
    for k in range(len(ANCHORS) - 1):
        level = (ANCHORS[k] + ANCHORS[k + 1]) / 2
        grid = [round(k + i / 10, 3) for i in range(11)]
        values = {a: psnr_at(model, sets[level], a)[0] for a in grid}
        best = max(values, key=values.__getitem__)
        result["between"][level] = (values[best], best)
    for k in range(1, len(ANCHORS) - 1):
        level = ANCHORS[k]
        (p_lo, y_lo), (p_k, y_k), (p_hi, y_hi) = (psnr_at(model, sets[level], k + d) for d in (-H, 0.0, H))
        bend = sum(float((a - 2 * b + c).norm()) for a, b, c in zip(y_lo, y_k, y_hi))
        span = sum(float((c - a).norm()) for a, c in zip(y_lo, y_hi))
        result["kinks"][level] = {"output": bend / span if span else 0.0,
                                  "psnr_slope_left": (p_k - p_lo) / H, "psnr_slope_right": (p_hi - p_k) / H}
    return result


def to_markdown(results: dict, args: argparse.Namespace, seconds: dict) -> str:
    modes = list(results)
    lines = [
        "# Chained or from the base: the anchors of one axis",
        "",
        f"Generated by `python -m benchmarks.anchors` on {datetime.date.today()}: the shipped `denoise` base "
        f"(alpha 0, trained at sigma 20) with one axis `sigma`, anchors {', '.join(f'{a:g}' for a in ANCHORS)}, "
        f"FTN-gc16; each anchor's tuners trained {args.steps} steps (batch {args.batch}, {args.patch} px patches of "
        f"BSD432, photo-true noise, L1, Adam 1e-4, seed {args.seed}), anchor after anchor, in each mode. Test: the "
        f"first {args.images} CBSD68 images, {args.crop} px centre crops, photo-true noise (clipped, 8-bit), "
        "the same noisy images for both modes. PSNR in dB, RGB.",
        "",
        "| | " + " | ".join(modes) + " |",
        "|---|" + "---|" * len(modes),
    ]
    for level in ANCHORS:
        lines.append(f"| at anchor sigma {level:g} | " + " | ".join(f"{results[m]['anchors'][level]:.2f}" for m in modes) + " |")
    for level in results[modes[0]]["between"]:
        lines.append(f"| between, sigma {level:g} (best alpha) | " + " | ".join(
            f"{results[m]['between'][level][0]:.2f} ({results[m]['between'][level][1]:g})" for m in modes) + " |")
    for level in results[modes[0]]["kinks"]:
        lines.append(f"| kink of the output at sigma {level:g} | " + " | ".join(
            f"{results[m]['kinks'][level]['output']:.3f}" for m in modes) + " |")
        lines.append(f"| PSNR slope left / right of sigma {level:g} (dB per alpha) | " + " | ".join(
            f"{results[m]['kinks'][level]['psnr_slope_left']:+.2f} / {results[m]['kinks'][level]['psnr_slope_right']:+.2f}"
            for m in modes) + " |")
    lines.append("| training seconds (all anchors) | " + " | ".join(f"{sum(seconds[m]):.0f}" for m in modes) + " |")
    mean_anchor = {m: statistics.mean(results[m]["anchors"][a] for a in ANCHORS[1:]) for m in modes}
    mean_between = {m: statistics.mean(v[0] for v in results[m]["between"].values()) for m in modes}
    mean_kink = {m: statistics.mean(v["output"] for v in results[m]["kinks"].values()) for m in modes}
    lines += [
        "",
        "Means over the trained anchors / the levels between / the inner anchors' kinks: "
        + "; ".join(f"{m}: {mean_anchor[m]:.2f} dB / {mean_between[m]:.2f} dB / {mean_kink[m]:.3f}" for m in modes) + ".",
        "",
    ]
    if len(modes) == 2:
        a, b = modes
        better = b if (mean_anchor[b] >= mean_anchor[a] and mean_between[b] >= mean_between[a]
                       and mean_kink[b] <= mean_kink[a]) else a if (mean_anchor[a] >= mean_anchor[b] and
                                                                  mean_between[a] >= mean_between[b] and
                                                                  mean_kink[a] <= mean_kink[b]) else None
        lines += [f"**{better}** is at least as good on all three counts at this budget (quality at the anchors, between "
                  "them, and smoothness across them)." if better else
                  "Neither mode is at least as good on all three counts at this budget.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=400, help="training steps per anchor (default 400)")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--patch", type=int, default=48)
    parser.add_argument("--images", type=int, default=12, help="CBSD68 test images (default 12)")
    parser.add_argument("--crop", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "anchors.md")
    args = parser.parse_args(argv)
    if not (TRAIN.is_dir() and TEST.is_dir()):
        raise SystemExit(f"anchors: needs {TRAIN} and {TEST} (../shared; see its README)")
    import ftn
    from ftn.models import resolve

    base = ftn.load(resolve("denoise")).export(0.0).eval()
    sets = test_images(args.images, args.crop, args.seed)
    results, seconds = {}, {}
    for mode, chained in (("from the base", False), ("chained", True)):
        print(f"{mode}:", flush=True)
        torch.manual_seed(args.seed)
        model = build(base, chained)
        seconds[mode] = train_anchors(model, args.steps, args.batch, args.patch, args.seed, lambda s: print(s, flush=True))
        results[mode] = evaluate(model, sets)
    text = to_markdown(results, args, seconds)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    args.out.with_suffix(".json").write_text(json.dumps({"results": {m: {k: {str(a): v for a, v in d.items()}
                                                                          for k, d in r.items()} for m, r in results.items()},
                                                           "seconds": seconds, "args": {k: str(v) for k, v in vars(args).items()}},
                                                          indent=1) + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
