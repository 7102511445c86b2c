"""Which base network gives the most quality per CPU-hour? Candidates trained for the same CPU time,
side by side in one run, on photo-true noise (clipped, 8-bit), then measured the way a user meets them.

    python -m benchmarks.arch_study                       # every candidate, 8 min each, docs/arch-study.md + .png
    python -m benchmarks.arch_study --minutes 1 --only resunet-16 --test-images 2 --out -   # a smoke run

Protocol (issue [2/6], item 2):

1. **Equal time, not equal iterations.** Each candidate's seconds per iteration is probed first, the
   candidates taking turns step by step so they share the same conditions; its iteration count is then ``minutes * 60 /
   (s/it)`` so every run gets the same CPU budget under the same cosine schedule. The probe rate, the
   planned and the actual wall time are all reported.
2. **One training recipe for all** (the measured CPU recipe of the design notes): stage 1 at sigma 50,
   global image skip, Adam 1e-3 with cosine decay, batch 16 of 64 px patches from BSD432, L1.
3. **Test as a user would**: the first ``--test-images`` CBSD68 images with photo-true sigma-50 noise
   (seeded per image), RGB PSNR on uint8, no border crop. Inference time per megapixel on a 512 x 512
   image at the study's thread count (median of ``--repeats``).
4. Validation PSNR on Set14 (5 images, photo-true noise) is logged during training: the PSNR
   against training time curve.

Runs live in ``reproduce/runs/arch-study/<candidate>/`` (config, log; the weights stay out of git, their
sha256 in ``reproduce/runs/arch-study/MANIFEST.tsv``), and
each finished candidate's numbers are cached in ``result.json`` beside it, so an interrupted study
resumes where it stopped.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import json
import platform
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

import ftn
from benchmarks.reproduce.manifest import record_weights
from ftn.data.datasets import EvalSet
from ftn.eval.metrics import psnr
from ftn.tasks import get_task
from ftn.train import load_config, train

ROOT = Path(__file__).resolve().parents[1]
RUNS = ROOT / "reproduce" / "runs" / "arch-study"
SHARED = ROOT.parent / "shared" / "data"
TASK_OPTIONS = {"clip": True, "quantize": True}
LEVEL = 50.0


@dataclass(frozen=True)
class Candidate:
    """A base network to compare: an architecture with its options."""

    name: str
    arch: str
    options: dict = field(default_factory=dict)

    def describe(self) -> str:
        opts = ", ".join(f"{k} {v}" for k, v in self.options.items() if k not in ("image_skip",))
        return f"{self.arch} ({opts})"


CANDIDATES = [
    Candidate("adafm-mini", "adafm_net", {"size": "mini", "image_skip": True}),            # today's shipped base
    Candidate("adafm-48x12", "adafm_net", {"size": "mini", "channels": 48, "blocks": 12, "image_skip": True}),
    Candidate("resunet-16", "resunet", {"size": "mini", "channels": 16, "blocks": 2, "scales": 3}),
    Candidate("resunet-32", "resunet", {"size": "mini", "channels": 32, "blocks": 2, "scales": 3}),
    Candidate("resunet-24x4", "resunet", {"size": "mini", "channels": 24, "blocks": 2, "scales": 4}),
]


def base_config(candidate: Candidate, iterations: int, out_dir: Path, threads: int) -> ftn.train.TrainConfig:
    """The shared stage-1 recipe for one candidate."""
    overrides = [
        f"name={candidate.name}", "stage=base", "task=denoise", f"task_options={json.dumps(TASK_OPTIONS)}",
        f"level={LEVEL}", f"arch={candidate.arch}", f"arch_options={json.dumps(candidate.options)}",
        f"train_data={SHARED / 'train' / 'BSD432'}", f"val_data={SHARED / 'test' / 'Set14'}", "val_limit=5",
        f"val_every={max(1, iterations // 6)}", "patch_size=64", "batch_size=16", f"iterations={iterations}",
        "lr=1.0e-3", "lr_min=1.0e-6", "scheduler=cosine", "loss=l1", "channels_last=true",
        f"checkpoint_every={max(1, iterations // 10)}", "log_every=20", "seed=0", f"threads={threads}",
        f"out_dir={out_dir}", "device=cpu",
    ]
    return load_config(None, overrides)


def probe_rates(candidates: list[Candidate], threads: int, rounds: int = 12) -> dict[str, float]:
    """Seconds per training iteration (forward, backward, Adam step at the recipe's batch) per candidate.

    The candidates take turns, one step each per round, so a change in the machine's load during
    the probe touches all of them alike; the median over rounds is kept.
    """
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    x = torch.rand(16, 3, 64, 64).to(memory_format=torch.channels_last)
    nets = {c.name: ftn.build_arch(c.arch, **c.options).to(memory_format=torch.channels_last).train() for c in candidates}
    opts = {name: torch.optim.Adam(net.parameters(), lr=1e-4) for name, net in nets.items()}
    times: dict[str, list[float]] = {name: [] for name in nets}
    for i in range(rounds + 2):
        for name, net in nets.items():
            t0 = time.perf_counter()
            loss = (net(x) - x).abs().mean()
            opts[name].zero_grad()
            loss.backward()
            opts[name].step()
            if i >= 2:  # the first steps pay for allocation
                times[name].append(time.perf_counter() - t0)
    # data sampling and degradation add a cost per step that is the same for every candidate
    return {name: statistics.median(t) for name, t in times.items()}


@torch.no_grad()
def seconds_per_megapixel(network: torch.nn.Module, threads: int, repeats: int) -> float:
    torch.set_num_threads(threads)
    x = torch.rand(1, 3, 512, 512).to(memory_format=torch.channels_last)
    network = network.eval().to(memory_format=torch.channels_last)
    network(x)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        network(x)
        times.append(time.perf_counter() - t0)
    return statistics.median(times) / (512 * 512 / 1e6)


@torch.no_grad()
def test_psnr(network: torch.nn.Module, images: int) -> tuple[float, float]:
    """(mean PSNR of the output, of the noisy input) on CBSD68 with photo-true sigma-50 noise."""
    task = get_task("denoise", **TASK_OPTIONS)
    data = EvalSet(SHARED / "test" / "CBSD68", task, LEVEL, limit=images)
    outs, ins = [], []
    for _, noisy, clean in data:
        y = network(noisy[None])[0].clamp(0, 1)
        outs.append(psnr(y, clean))
        ins.append(psnr(noisy, clean))
    return float(np.mean(outs)), float(np.mean(ins))


def curve(log: Path) -> list[tuple[float, float]]:
    """(elapsed seconds, validation PSNR) from a run's log.csv."""
    points = []
    with log.open() as fh:
        for row in csv.DictReader(fh):
            value = row.get(next((k for k in row if k.startswith("val_psnr")), "val_psnr"))
            if value:
                points.append((float(row["elapsed_s"]), float(value)))
    return points


def run_candidate(candidate: Candidate, rate: float, minutes: float, threads: int, test_images: int,
                  repeats: int) -> dict:
    out_dir = RUNS / candidate.name
    cached = out_dir / "result.json"
    if cached.is_file():
        stored = json.loads(cached.read_text())
        if stored.get("minutes") == minutes and stored.get("test_images") == test_images:
            return stored
    iterations = max(20, int(round(minutes * 60 / rate)))
    config = base_config(candidate, iterations, out_dir, threads)
    resume = (out_dir / "checkpoint.safetensors").is_file()
    if not resume and out_dir.exists():
        for stale in ("log.csv", "model.safetensors", "config.yaml"):
            (out_dir / stale).unlink(missing_ok=True)
    t0 = time.perf_counter()
    model_path = train(config, resume=resume, progress=sys.stderr.isatty())
    wall = time.perf_counter() - t0
    (out_dir / "checkpoint.safetensors").unlink(missing_ok=True)  # finished: the weight's manifest line is the evidence
    record_weights(RUNS, [out_dir])
    network = ftn.load(model_path)  # a stage-1 file holds the plain network
    params = sum(p.numel() for p in network.parameters())
    out, inp = test_psnr(network, test_images)
    result = {
        "name": candidate.name, "network": candidate.describe(), "params": params, "minutes": minutes,
        "probe_s_per_it": rate, "iterations": iterations, "wall_s": wall,
        "train_s": ftn.io.read_metadata(model_path).get("training", {}).get("wall_time_s", wall),
        "test_images": test_images, "psnr": out, "input_psnr": inp,
        "s_per_megapixel": seconds_per_megapixel(network, threads, repeats), "curve": curve(out_dir / "log.csv"),
    }
    cached.write_text(json.dumps(result, indent=1))
    return result


def plot(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    for r in results:
        pts = r["curve"]
        ax1.plot([t / 60 for t, _ in pts], [v for _, v in pts], marker=".", label=r["name"])
        ax2.plot([r["s_per_megapixel"]], [r["psnr"]], marker="o")
        ax2.annotate(r["name"], (r["s_per_megapixel"], r["psnr"]), fontsize=8, xytext=(4, 2), textcoords="offset points")
    ax1.set_xlabel("training time (min)")
    ax1.set_ylabel("validation PSNR, Set14 (dB)")
    ax1.set_title("PSNR against CPU training time")
    ax2.set_xlabel("inference, s per megapixel")
    ax2.set_ylabel("test PSNR, CBSD68 (dB)")
    ax2.set_title("quality against inference cost")
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
    ax1.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def to_markdown(results: list[dict], threads: int) -> str:
    minutes = results[0]["minutes"]
    images = results[0]["test_images"]
    lines = [
        "# Base networks at equal CPU training time (`python -m benchmarks.arch_study`)",
        "",
        f"Measured {datetime.date.today().isoformat()} on {platform.processor() or platform.machine()}, "
        f"{threads} threads, torch {torch.__version__}. Every candidate trained for **{minutes:g} min** of this CPU "
        "(iterations from a probe of seconds per iteration, the candidates taking turns step by step), stage 1 at sigma 50 on "
        "photo-true noise (clipped to [0, 255], 8-bit), the same recipe for all (image skip, Adam 1e-3 cosine, "
        "batch 16 x 64 px, L1). Test: the first "
        f"{images} CBSD68 images with photo-true sigma-50 noise, RGB PSNR on uint8, no crop; input PSNR "
        f"{results[0]['input_psnr']:.2f} dB. Inference: one 512 x 512 image, median of repeats.",
        "",
    ]
    lines += results_table(results)
    lines += ["", "![PSNR against training time; PSNR against inference cost](arch-study.png)", ""]
    return "\n".join(lines)


def results_table(results: list[dict]) -> list[str]:
    """The study's table and verdict as Markdown lines (also embedded in docs/quality.md by benchmarks.quality)."""
    lines = ["| candidate | network | parameters | s/it (probe) | iterations | training wall (min) | PSNR (dB) | s / megapixel |",
             "|---|---|---|---|---|---|---|---|"]
    for r in sorted(results, key=lambda r: -r["psnr"]):
        lines.append(f"| {r['name']} | {r['network']} | {r['params']:,} | {r['probe_s_per_it']:.3f} | {r['iterations']} | "
                     f"{r['wall_s'] / 60:.1f} | {r['psnr']:.2f} | {r['s_per_megapixel']:.2f} |")
    best = max(results, key=lambda r: r["psnr"])
    fastest = min(results, key=lambda r: r["s_per_megapixel"])
    lines += ["", f"Highest PSNR at this budget: **{best['name']}** ({best['psnr']:.2f} dB, "
              f"{best['s_per_megapixel']:.2f} s/MP). Cheapest to run: {fastest['name']} ({fastest['s_per_megapixel']:.2f} s/MP, "
              f"{fastest['psnr']:.2f} dB)."]
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=8.0, help="CPU training minutes per candidate")
    parser.add_argument("--only", nargs="+", default=None, help="candidate names (default: all)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--test-images", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default="docs/arch-study.md", help="markdown file, or - for stdout only")
    args = parser.parse_args(argv)
    if not SHARED.is_dir():
        print(f"arch_study: the training and test images are missing: {SHARED}", file=sys.stderr)
        return 2
    chosen = [c for c in CANDIDATES if args.only is None or c.name in args.only]
    if not chosen:
        print(f"arch_study: no candidate named {args.only}; known: {', '.join(c.name for c in CANDIDATES)}", file=sys.stderr)
        return 2
    rates = probe_rates(chosen, args.threads)
    print("probe (s/it): " + ", ".join(f"{k} {v:.3f}" for k, v in rates.items()), flush=True)
    results = [run_candidate(c, rates[c.name], args.minutes, args.threads, args.test_images, args.repeats) for c in chosen]
    text = to_markdown(results, args.threads)
    print(text)
    if args.out != "-":
        out = Path(args.out)
        out.write_text(text)
        plot(results, out.with_suffix(".png"))
        (out.with_suffix(".json")).write_text(json.dumps(results, indent=1))
        print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
