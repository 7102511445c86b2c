"""What anchors buy, and how to reach them: chained, from the base, or only two (issue [4/6]).

    python -m benchmarks.anchors                 # about 25 minutes on 2 cores; writes docs/anchors.md
    python -m benchmarks.anchors --steps 2 --images 2 --out /tmp/anchors.md   # a smoke run

One axis ``sigma`` on the base network (the shipped ``denoise`` at alpha 0, trained at sigma 20),
FTN-gc16 tuners, three arms trained with the same batch, patch, learning rate, seed and total steps:

* **from the base**: anchors 20, 35, 50, 80, trained anchor after anchor (``--steps`` each);
  W_k = FTN_k(f), every anchor's FTN starts from the base kernel f;
* **chained**: the same anchors, W_k = FTN_k(W_{k-1}), each FTN starts from the previous kernel;
* **two anchors (20, 80)**: today's kind of model, one tuner trained at sigma 80 for 3 x ``--steps``.

Measured on CBSD68 centre crops with photo-true noise (clipped, 8-bit), the same noisy images for all
arms: PSNR at each anchor of the multi-anchor arms (alpha = k at sigma_k), between them (the best alpha
in the segment, on a 0.1 grid, at the middle level), and smoothness across an anchor: the *kink* of the
output path y(alpha) at alpha = k, ``|y(k+h) - 2 y(k) + y(k-h)| / |y(k+h) - y(k-h)|`` (0 for a
straight path, 1 when the path turns by 90 degrees; h = 0.1), and of PSNR(alpha) the change of slope
there. The two-anchor model at every level: the best alpha on a 0.05 grid over [0, 1] and the alpha of
a linear calibration (``ftn.levels``: piecewise linear between its anchor levels); its kink at the
inner levels at the linear alpha with h = 0.025 (1.5 sigma, as h = 0.1 left of the inner anchors).
The per-pixel cost of each arm (convolutions per tuned layer, counted as ``benchmarks.axes_cost``
counts them) at a fixed setting and under maps.
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
TWO = (ANCHORS[0], ANCHORS[-1])
TWO_NAME = "two anchors (20, 80)"
H = 0.1
# The two-anchor arm's kink step: the same sigma step (1.5) as H left of the inner anchors.
H_TWO = H * (ANCHORS[1] - ANCHORS[0]) / (TWO[1] - TWO[0])
GRID_TWO = tuple(i / 20 for i in range(21))  # alpha 0, 0.05, ..., 1


def _task():
    from ftn.tasks.denoise import Denoise

    return Denoise(clip=True, quantize=True)


def build(base: torch.nn.Module, chained: bool, anchors: tuple[float, ...] = ANCHORS):
    """The base with one ``sigma`` axis of len(anchors) anchors, FTN-gc16 tuners at the identity."""
    import ftn
    from ftn.methods.axes import AxisSpec

    return ftn.attach_axes(copy.deepcopy(base), "ftn", [AxisSpec("sigma", len(anchors), chained=chained)], groups=16)


def sampler(patch: int, seed: int):
    """The training patches (BSD432, photo-true noise), loaded once for every arm; ``batch(step, n)``
    depends on (seed, step, n) and the level only."""
    from ftn.data.datasets import PatchSampler

    return PatchSampler(TRAIN, _task(), ANCHORS[1], patch_size=patch, seed=seed)


def train_anchors(model, patches, anchors: tuple[float, ...], steps: int, batch: int, log) -> list[float]:
    """Train anchor 1, 2, ... in turn: only that anchor's tuners learn, at alpha = k, on sigma_k,
    ``steps`` steps each. Returns the seconds each anchor took."""
    seconds = []
    for k in range(1, len(anchors)):
        patches.level = anchors[k]
        params = model.tuner_parameters(axis="sigma", anchor=k)
        for p in model.parameters():
            p.requires_grad_(False)
        for p in params:
            p.requires_grad_(True)
        optimiser = torch.optim.Adam(params, lr=1e-4)
        model.train()
        start = time.perf_counter()
        for step in range(steps):
            degraded, clean = patches.batch(step, batch)
            loss = torch.nn.functional.l1_loss(model(degraded, alpha={"sigma": float(k)}), clean)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            if step % max(1, steps // 5) == 0 or step == steps - 1:
                log(f"  anchor {k} (sigma {anchors[k]:g}) step {step + 1}/{steps} loss {loss.item():.4f}")
        seconds.append(time.perf_counter() - start)
        model.eval()
    return seconds


def levels_measured() -> list[float]:
    """The anchors and the middle of each segment between them."""
    return sorted({*ANCHORS, *((a + b) / 2 for a, b in zip(ANCHORS, ANCHORS[1:]))})


def test_images(images: int, crop: int, seed: int = 0) -> dict[float, list[tuple[torch.Tensor, torch.Tensor]]]:
    """(noisy, clean) centre crops of the first ``images`` CBSD68 images per test level, seeded per image."""
    from ftn.data.datasets import EvalSet

    out = {}
    for level in levels_measured():
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


def kink(model, pairs, alpha: float, h: float) -> dict[str, float]:
    """The output path's kink at ``alpha`` (step ``h``) and PSNR's slopes left and right of it (dB per alpha)."""
    (p_lo, y_lo), (p_k, y_k), (p_hi, y_hi) = (psnr_at(model, pairs, alpha + d) for d in (-h, 0.0, h))
    bend = sum(float((a - 2 * b + c).norm()) for a, b, c in zip(y_lo, y_k, y_hi))
    span = sum(float((c - a).norm()) for a, c in zip(y_lo, y_hi))
    return {"output": bend / span if span else 0.0, "psnr_slope_left": (p_k - p_lo) / h, "psnr_slope_right": (p_hi - p_k) / h}


def evaluate(model, sets) -> dict:
    """A multi-anchor arm: PSNR at the anchors, the best alpha between them, the kinks at the inner anchors."""
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
        result["kinks"][ANCHORS[k]] = kink(model, sets[ANCHORS[k]], k, H)
    return result


def linear_alpha(level: float, anchors: tuple[float, ...] = TWO) -> float:
    """The alpha a linear calibration gives (piecewise linear between the anchor levels, ``ftn.levels``)."""
    from ftn.levels import Axis, axis_alpha

    return round(float(axis_alpha(Axis("sigma", anchors), level)[0]), 6)


def evaluate_two(model, sets) -> dict:
    """The two-anchor arm at every test level: the best alpha on GRID_TWO and the linear calibration's
    alpha (each as (PSNR, alpha)); kinks at the inner anchor levels, at the linear alpha, step H_TWO."""
    result: dict = {"levels": {}, "kinks": {}}
    # alpha outermost: the blended kernels are cached per alpha, so each grid point computes them once
    values = {a: {level: psnr_at(model, pairs, a)[0] for level, pairs in sets.items()} for a in GRID_TWO}
    for level, pairs in sets.items():
        best = max(GRID_TWO, key=lambda a, lv=level: values[a][lv])
        lin = linear_alpha(level)
        result["levels"][level] = {"best": (values[best][level], best),
                                   "linear": (values[lin][level] if lin in values else psnr_at(model, pairs, lin)[0], lin)}
    for level in ANCHORS[1:-1]:
        lin = linear_alpha(level)
        result["kinks"][level] = {**kink(model, sets[level], lin, H_TWO), "alpha": lin, "h": H_TWO}
    return result


def per_pixel_cost(model, plain, setting: float | tuple[float, float], size: int = 32) -> float:
    """Convolutions per tuned layer (the most over layers) at a number or a map spanning (low, high),
    counted by ``torch.utils.flop_counter`` against the plain network, as ``benchmarks.axes_cost`` does."""
    from benchmarks.axes_cost import conv_macs_per_module, per_layer_ratios, setting_for

    x = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(0))
    alpha = setting_for({"sigma": setting}, size)
    with torch.inference_mode():
        model(x, alpha=alpha)  # warm-up: the blended kernels and deltas are cached
    tuned = conv_macs_per_module(lambda: model(x, alpha=alpha))
    ratios = per_layer_ratios(conv_macs_per_module(lambda: plain(x)), tuned, [n for n, _ in model.axes_layers()])
    return max(ratios)


def cost_cases(anchors: tuple[float, ...]) -> dict[str, float | tuple[float, float]]:
    """The settings whose per-pixel cost the table reports, in each arm's own alpha."""
    lo, hi = linear_alpha(ANCHORS[1], anchors), linear_alpha(ANCHORS[2], anchors)
    return {"a fixed setting (sigma 42.5)": linear_alpha(42.5, anchors),
            f"a map over sigma {ANCHORS[1]:g} ... {ANCHORS[2]:g}": (lo, hi),
            f"a map over sigma {anchors[0]:g} ... {anchors[-1]:g}": (0.0, float(len(anchors) - 1))}


def _mean(values) -> float:
    return statistics.mean(values)


def summary(results: dict) -> dict[str, dict[str, float]]:
    """Per arm, the mean PSNR at the inner levels (35, 50; the two-anchor arm at its best and its linear
    alpha), between the anchors, at sigma 80, and the mean output kink at the inner levels."""
    inner, between = ANCHORS[1:-1], [(a + b) / 2 for a, b in zip(ANCHORS, ANCHORS[1:])]
    out = {}
    for arm, r in results.items():
        if arm == TWO_NAME:
            lv = r["levels"]
            out[arm] = {"inner": _mean(lv[a]["best"][0] for a in inner), "inner_linear": _mean(lv[a]["linear"][0] for a in inner),
                        "between": _mean(lv[a]["best"][0] for a in between), "last": lv[ANCHORS[-1]]["linear"][0],
                        "kink": _mean(v["output"] for v in r["kinks"].values())}
        else:
            out[arm] = {"inner": _mean(r["anchors"][a] for a in inner), "between": _mean(v[0] for v in r["between"].values()),
                        "last": r["anchors"][ANCHORS[-1]], "kink": _mean(v["output"] for v in r["kinks"].values())}
    return out


def reading(results: dict, seconds: dict, costs: dict, other_runs: bool = False) -> list[str]:
    """The paragraph that reads the table: what the extra anchors buy against the two-anchor arm, and
    at what cost (training seconds, convolutions per pixel)."""
    s = summary(results)
    two = s[TWO_NAME]
    multi = [m for m in results if m != TWO_NAME]
    inner = ", ".join(f"{a:g}" for a in ANCHORS[1:-1])
    between = ", ".join(f"{(a + b) / 2:g}" for a, b in zip(ANCHORS, ANCHORS[1:]))
    lines = [f"**What the extra anchors ({inner}) buy**, each multi-anchor arm minus the two-anchor model: "
             + "; ".join(f"{m}: {s[m]['inner'] - two['inner']:+.2f} dB at the inner levels ({inner}; "
                         f"{s[m]['inner'] - two['inner_linear']:+.2f} dB against its linear alpha), "
                         f"{s[m]['between'] - two['between']:+.2f} dB between ({between}), "
                         f"{s[m]['last'] - two['last']:+.2f} dB at sigma {ANCHORS[-1]:g}" for m in multi)
             + f". The two-anchor model's output kink at the inner levels: {two['kink']:.3f} (against "
             + ", ".join(f"{s[m]['kink']:.3f}" for m in multi) + " at the others' anchors)."]
    cases = list(costs[TWO_NAME])
    lines.append(
        "**At what cost**: training seconds "
        + ", ".join(f"{sum(seconds[m]):.0f} ({m})" for m in results)
        + " for the same number of steps" + (" (measured in different runs, under different loads)" if other_runs else "")
        + "; per pixel, "
        + "; ".join(f"{c}: " + ", ".join(f"{costs[m][c]:.0f}" for m in results) for c in cases)
        + " convolutions per tuned layer (in the table's column order). A fixed setting is one blended "
        "kernel per layer whatever the anchors; a map costs one convolution per anchor delta it touches "
        "(docs/axes-cost.md).")
    best = max(multi, key=lambda m: s[m]["inner"] + s[m]["between"])
    gain_inner, gain_between = s[best]["inner"] - two["inner"], s[best]["between"] - two["between"]
    if gain_inner > 0 and gain_between > 0:
        verdict = (f"At this budget the extra anchors pay: {best} is ahead of the two-anchor model's best alpha "
                   f"at the inner levels and between them.")
    elif gain_inner <= 0 and gain_between <= 0:
        verdict = (f"At this budget the extra anchors do not pay: the two-anchor model at its best alpha is at "
                   f"least as good as {best} at the inner levels and between them.")
    else:
        verdict = (f"At this budget the extra anchors pay only in part: {best} is "
                   f"{'ahead' if gain_inner > 0 else 'behind'} at the inner levels and "
                   f"{'ahead' if gain_between > 0 else 'behind'} between them.")
    lines.append(verdict)
    return lines


def _cell_two(entry: dict, level: float) -> str:
    best, lin = entry["best"], entry["linear"]
    if level in TWO:
        return f"{lin[0]:.2f}"
    if level in ANCHORS:
        return f"{best[0]:.2f} ({best[1]:g}) / {lin[0]:.2f} ({lin[1]:g})"
    return f"{best[0]:.2f} ({best[1]:g})"


def to_markdown(results: dict, args: argparse.Namespace, seconds: dict, costs: dict | None = None,
                sources: dict[str, str] | None = None) -> str:
    modes = list(results)
    multi = [m for m in modes if m != TWO_NAME]
    two = results.get(TWO_NAME)

    def row(label: str, multi_cell, two_cell) -> str:
        cells = [multi_cell(results[m]) for m in multi] + ([two_cell(two)] if two is not None else [])
        return f"| {label} | " + " | ".join(cells) + " |"

    lines = [
        "# The anchors of one axis: chained, from the base, or only two",
        "",
        f"Generated by `python -m benchmarks.anchors` on {datetime.date.today()}: the shipped `denoise` base "
        f"(alpha 0, trained at sigma 20) with one axis `sigma`, FTN-gc16. The multi-anchor arms have anchors "
        f"{', '.join(f'{a:g}' for a in ANCHORS)}, each anchor's tuners trained {args.steps} steps, anchor after "
        f"anchor, from the base or chained; the two-anchor arm (anchors {TWO[0]:g} and {TWO[1]:g}: today's kind of "
        f"model) has one tuner trained {(len(ANCHORS) - 1) * args.steps} steps at sigma {TWO[1]:g}, the same total. "
        f"All: batch {args.batch}, {args.patch} px patches of BSD432, photo-true noise, L1, Adam 1e-4, seed "
        f"{args.seed}. Test: the first {args.images} CBSD68 images, {args.crop} px centre crops, photo-true noise "
        "(clipped, 8-bit), the same noisy images for every arm. PSNR in dB, RGB. The two-anchor column gives, "
        "where the others have an inner anchor, its best alpha on a 0.05 grid and the alpha of a linear "
        "calibration (`PSNR (best alpha) / PSNR (linear alpha)`), and between them its best alpha.",
        "",
    ]
    for source in dict.fromkeys((sources or {}).values()):
        named = " and ".join(f"*{arm}*" for arm, where in sources.items() if where == source)
        lines += [f"The column(s) {named} hold the numbers of {source}, not retrained in this run (the same code, "
                  "seeds and settings); their training seconds were measured under that run's load.", ""]
    lines += [
        "| | " + " | ".join(modes) + " |",
        "|---|" + "---|" * len(modes),
    ]
    for level in ANCHORS:
        lines.append(row(f"at anchor sigma {level:g}", lambda r, lv=level: f"{r['anchors'][lv]:.2f}",
                         lambda r, lv=level: _cell_two(r["levels"][lv], lv)))
    for level in results[multi[0]]["between"]:
        lines.append(row(f"between, sigma {level:g} (best alpha)",
                         lambda r, lv=level: f"{r['between'][lv][0]:.2f} ({r['between'][lv][1]:g})",
                         lambda r, lv=level: _cell_two(r["levels"][lv], lv)))
    for level in results[multi[0]]["kinks"]:
        lines.append(row(f"kink of the output at sigma {level:g}", lambda r, lv=level: f"{r['kinks'][lv]['output']:.3f}",
                         lambda r, lv=level: f"{r['kinks'][lv]['output']:.3f} (at {r['kinks'][lv]['alpha']:g}, "
                                             f"h {r['kinks'][lv]['h']:g})"))
        lines.append(row(f"PSNR slope left / right of sigma {level:g} (dB per alpha)",
                         lambda r, lv=level: f"{r['kinks'][lv]['psnr_slope_left']:+.2f} / {r['kinks'][lv]['psnr_slope_right']:+.2f}",
                         lambda r: "— (no anchor there)"))
    lines.append("| training seconds (all anchors) | " + " | ".join(f"{sum(seconds[m]):.0f}" for m in modes) + " |")
    for case in (costs or {}).get(modes[0], {}):
        lines.append(f"| convolutions per tuned layer, {case} | " + " | ".join(f"{costs[m][case]:.2f}" for m in modes) + " |")
    s = summary({m: results[m] for m in multi})
    lines += [
        "",
        "Means over the trained anchors / the levels between / the inner anchors' kinks: "
        + "; ".join(f"{m}: {_mean(results[m]['anchors'][a] for a in ANCHORS[1:]):.2f} dB / {s[m]['between']:.2f} dB / "
                    f"{s[m]['kink']:.3f}" for m in multi) + ".",
        "",
    ]
    if len(multi) == 2:
        a, b = multi
        mean_anchor = {m: _mean(results[m]["anchors"][x] for x in ANCHORS[1:]) for m in multi}
        better = b if (mean_anchor[b] >= mean_anchor[a] and s[b]["between"] >= s[a]["between"]
                       and s[b]["kink"] <= s[a]["kink"]) else a if (mean_anchor[a] >= mean_anchor[b] and
                                                                    s[a]["between"] >= s[b]["between"] and
                                                                    s[a]["kink"] <= s[b]["kink"]) else None
        lines += [f"**{better}** is at least as good on all three counts at this budget (quality at the anchors, between "
                  "them, and smoothness across them)." if better else
                  "Neither mode is at least as good on all three counts at this budget.", ""]
    if two is not None and costs:
        for paragraph in reading(results, seconds, costs, bool(sources)):
            lines += [paragraph, ""]
    return "\n".join(lines)


def plot(results: dict, path: Path) -> None:
    """PSNR against sigma for every arm (left) and each arm minus the two-anchor model at its best alpha (right)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    levels = levels_measured()

    def curve(r: dict) -> list[float]:
        if "levels" in r:
            return [r["levels"][lv]["best"][0] for lv in levels]
        return [r["anchors"][lv] if lv in r["anchors"] else r["between"][lv][0] for lv in levels]

    two = curve(results[TWO_NAME])
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for arm, r in results.items():
        ys = curve(r)
        left.plot(levels, ys, marker="o", label=arm)
        right.plot(levels, [y - t for y, t in zip(ys, two)], marker="o", label=arm)
    linear = [results[TWO_NAME]["levels"][lv]["linear"][0] for lv in levels]
    left.plot(levels, linear, ls="--", color="grey", label="two anchors, linear alpha")
    right.plot(levels, [y - t for y, t in zip(linear, two)], ls="--", color="grey", label="two anchors, linear alpha")
    for ax in (left, right):
        for a in ANCHORS:
            ax.axvline(a, color="0.85", lw=0.8, zorder=0)
        ax.set_xlabel("noise sigma (each arm at its best alpha; grey lines: anchors)")
    left.set_ylabel("PSNR (dB)")
    right.set_ylabel("dB against two anchors at its best alpha")
    right.axhline(0, color="black", lw=0.6)
    left.legend(fontsize=8)
    fig.suptitle("One axis sigma on the shipped denoise base: what anchors buy")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _plain_json(value):
    """Float keys as strings, tuples as lists, for json."""
    if isinstance(value, dict):
        return {str(k): _plain_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain_json(v) for v in value]
    return value


ARMS = {"from-base": ("from the base", False, ANCHORS), "chained": ("chained", True, ANCHORS),
        "two": (TWO_NAME, False, TWO)}
MEASURE_ARGS = ("steps", "batch", "patch", "images", "crop", "seed")


def _from_json(result: dict) -> dict:
    """A result read back from json: level keys as floats again."""
    return {key: {float(level): v for level, v in table.items()} for key, table in result.items()}


def write(results: dict, seconds: dict, costs: dict, args: argparse.Namespace, out: Path,
          sources: dict[str, str] | None = None) -> str:
    """The table (``out``), its numbers (.json) and the plot (.png); returns the table."""
    text = to_markdown(results, args, seconds, costs, sources)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    out.with_suffix(".json").write_text(json.dumps(
        {"results": _plain_json(results), "seconds": seconds, "costs": costs, "sources": sources or {},
         "args": {k: str(getattr(args, k)) for k in (*MEASURE_ARGS, "out")}}, indent=1, allow_nan=False) + "\n")
    plot(results, out.with_suffix(".png"))
    return text


def merge(parts: list[Path], out: Path) -> str:
    """Docs from the part files of ``--arm`` runs (each arm once, the same measurement settings). A part
    may carry ``"source"``: where its numbers come from, when not from this run (the table says so)."""
    loaded = [entry for p in parts for entry in json.loads(p.read_text())]  # each file: a list of arms
    settings = {json.dumps(part["args"], sort_keys=True) for part in loaded}
    if len(settings) != 1:
        raise SystemExit(f"anchors: the parts were measured with different settings: {sorted(settings)}")
    by_arm = {part["arm"]: part for part in loaded}
    order = [name for name, _, _ in ARMS.values() if name in by_arm]
    if len(order) != len(loaded) or TWO_NAME not in by_arm or len(order) < 2:
        raise SystemExit(f"anchors: need one part per arm, the two-anchor arm and a multi-anchor arm; got {[p['arm'] for p in loaded]}")
    args = argparse.Namespace(**{k: int(v) for k, v in loaded[0]["args"].items()}, out=out)
    return write({a: _from_json(by_arm[a]["result"]) for a in order}, {a: by_arm[a]["seconds"] for a in order},
                 {a: by_arm[a]["costs"] for a in order}, args, out,
                 {a: by_arm[a]["source"] for a in order if by_arm[a].get("source")})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=400,
                        help="training steps per anchor of the multi-anchor arms; the two-anchor arm's one tuner "
                             "gets (anchors - 1) x steps (default 400)")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--patch", type=int, default=48)
    parser.add_argument("--images", type=int, default=12, help="CBSD68 test images (default 12)")
    parser.add_argument("--crop", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "anchors.md",
                        help="the table; its .json and .png are written beside it")
    parser.add_argument("--arm", choices=list(ARMS), action="append",
                        help="train and measure only this arm (repeatable) and write its numbers to --part: arms "
                             "run in separate processes give the same numbers (each is seeded on its own)")
    parser.add_argument("--part", type=Path, help="with --arm: the part file (json) to write")
    parser.add_argument("--merge", type=Path, nargs="+", metavar="PART", help="write --out from part files")
    args = parser.parse_args(argv)
    if args.merge:
        print(merge(args.merge, args.out))
        return 0
    if bool(args.arm) != bool(args.part):
        parser.error("--arm and --part go together")
    if not (TRAIN.is_dir() and TEST.is_dir()):
        raise SystemExit(f"anchors: needs {TRAIN} and {TEST} (../shared; see its README)")
    import ftn
    from ftn.models import resolve

    base = ftn.load(resolve("denoise")).export(0.0).eval()
    sets = test_images(args.images, args.crop, args.seed)
    patches = sampler(args.patch, args.seed)
    results, seconds, costs = {}, {}, {}
    for key in args.arm or list(ARMS):
        arm, chained, anchors = ARMS[key]
        steps = args.steps if anchors == ANCHORS else (len(ANCHORS) - 1) * args.steps  # the same total
        print(f"{arm}:", flush=True)
        torch.manual_seed(args.seed)
        model = build(base, chained, anchors)
        seconds[arm] = train_anchors(model, patches, anchors, steps, args.batch, lambda s: print(s, flush=True))
        results[arm] = evaluate_two(model, sets) if anchors == TWO else evaluate(model, sets)
        costs[arm] = {case: per_pixel_cost(model, base, setting) for case, setting in cost_cases(anchors).items()}
    if args.part:
        args.part.parent.mkdir(parents=True, exist_ok=True)
        args.part.write_text(json.dumps([{"arm": arm, "result": _plain_json(results[arm]), "seconds": seconds[arm],
                                          "costs": costs[arm], "args": {k: getattr(args, k) for k in MEASURE_ARGS}}
                                         for arm in results], indent=1, allow_nan=False) + "\n")
        return 0
    print(write(results, seconds, costs, args, args.out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
