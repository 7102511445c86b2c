"""Peak memory and time of ``ftn run`` on a large photo: whole image against tiles, side by side.

Each configuration runs the real command in its own process (so the peak resident memory belongs
to that run alone, read with ``wait4``) on the same generated 4000x3000 image:

    python -m benchmarks.tiling                       # writes docs/tiling.md
    python -m benchmarks.tiling --size 1200x900 --out -

Rows: the whole image at once (``--tile 0``), the automatic tile size (from free memory), and fixed
512-pixel tiles; the output of every tiled run is compared with the whole-image output.
"""

from __future__ import annotations

import argparse
import datetime
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from benchmarks.speed import machine  # the machine line every benchmark prints

DOCS = Path(__file__).resolve().parents[1] / "docs"


def make_photo(path: Path, width: int, height: int, seed: int = 0) -> None:
    """A smooth colour image with noise of sigma 30, so the denoiser has work everywhere."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    base = np.stack([0.5 + 0.4 * np.sin(x / 97 + c) * np.cos(y / 71 - c) for c in range(3)], axis=-1)
    noisy = base * 255 + rng.normal(0, 30, base.shape).astype(np.float32)
    Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8)).save(path)


def run_measured(args: list[str], threads: int) -> tuple[float, float, str]:
    """(seconds, peak resident MiB of that process alone, stdout) of ``ftn run ARGS``."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    command = [sys.executable, "-c", "import sys, ftn.cli; sys.exit(ftn.cli.main(sys.argv[1:]))", "run", *args]
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        start = time.perf_counter()
        proc = subprocess.Popen(command, stdout=out, stderr=err, text=True, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        if proc.returncode != 0:
            raise RuntimeError(f"ftn run {' '.join(args)} failed ({proc.returncode}): {err.read().strip()[-500:]}")
        return seconds, usage.ru_maxrss / 1024, out.read()  # Linux: ru_maxrss in KiB


def measure_photo(width: int, height: int, model: str, alpha: str, threads: int) -> str:
    """Run the three configurations on a generated photo; returns the markdown report."""
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        photo = Path(tmp) / "photo.png"
        make_photo(photo, width, height)
        outputs = {}
        for label, tile in (("whole image (--tile 0)", "0"), ("auto tiles (--tile auto)", "auto"), ("512-px tiles (--tile 512)", "512")):
            target = Path(tmp) / f"out-{tile}.png"
            seconds, peak, printed = run_measured(
                ["-i", str(photo), "-o", str(target), "--model", model, "--alpha", alpha, "--tile", tile], threads
            )
            outputs[tile] = np.asarray(Image.open(target), dtype=np.int16)
            found = re.search(r"(\d+) tiles", printed)
            rows.append((label, tile, found[1] if found else "1", seconds, peak))
            print(f"{label:28s} tiles {rows[-1][2]:>4s}  {seconds:7.1f} s  peak {peak:8.0f} MiB", flush=True)
    whole_peak = rows[0][4]
    input_mib = width * height * 3 * 4 / 2**20
    lines = [
        "# Large images: peak memory of `ftn run`, whole image against tiles",
        "",
        f"Measured {datetime.date.today()} by `python -m benchmarks.tiling` on {machine()}.",
        "",
        f"Photo {width}x{height} (generated, noise sigma 30), model `{model}`, alpha {alpha}; each row is one",
        "`ftn run` process, its peak resident memory read with `wait4` (it includes Python, torch and the image",
        f"buffers: the float32 input alone is {input_mib:.0f} MiB). Max |difference| to the whole-image output is in 8-bit levels.",
        "",
        "| run | tiles | time (s) | peak memory (MiB) | peak vs whole image | max diff to whole image |",
        "|---|---|---|---|---|---|",
    ]
    for label, tile, tiles, seconds, peak in rows:
        diff = int(np.abs(outputs[tile] - outputs["0"]).max())
        lines.append(f"| {label} | {tiles} | {seconds:.1f} | {peak:.0f} | {peak / whole_peak:.2f} | {diff} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="4000x3000", help="WIDTHxHEIGHT of the test photo (default 4000x3000)")
    parser.add_argument("--model", default="denoise", help="a shipped model name or file (default denoise)")
    parser.add_argument("--alpha", default="0.5")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--out", default=str(DOCS / "tiling.md"), help="markdown file to write, or - for none")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.lower().split("x"))
    text = measure_photo(width, height, args.model, args.alpha, args.threads)
    print(text)
    if args.out != "-":
        Path(args.out).write_text(text)
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
