"""Frames per second of ``ftn run`` on a video: a constant alpha against the plain network, side by side.

    python -m benchmarks.video                          # writes docs/video.md (minutes; longer on busy cores)
    python -m benchmarks.video --size 320x240 --frames 48 --repeats 3 --out -

A clip is generated (H.264 + AAC in MP4, a noisy moving picture) and run through the shipped
``denoise`` model by :func:`ftn.infer.video.process_video`, in these configurations, round-robin
(the order alternates between repeats so that machine noise hits each alike; time is the process's CPU
time, robust to waiting for a busy machine's cores):

* **plain network**: the same pipeline (decode, ``apply_model``, encode, audio copied) with the model's
  forward replaced by the plain network at alpha 0.5 (``model.export(0.5)``: what a non-tunable network costs);
* **constant alpha 0.5**: the tunable model; its blended kernels are computed once and reused for
  every frame (the methods' kernel cache), so it should cost what the plain network costs;
* **keyframed alpha** (0 -> 1 over the clip): a new alpha every frame, so the kernels are blended anew
  for every frame;
* **per-pixel map** (a static left-to-right ramp): Eq. 3, two convolutions per tuned layer.

Beside the end-to-end rates, the network alone is timed per frame (the plain network and the model at
alpha 0.5, each frame's pair back to back) and the median of the paired ratios is reported: the
end-to-end ratio includes decoding and encoding, which both configurations share.
"""

from __future__ import annotations

import argparse
import datetime
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import ftn
from benchmarks.speed import machine, median_ci
from ftn.infer.video import build_schedule, process_video
from ftn.models import resolve

DOCS = Path(__file__).resolve().parents[1] / "docs"


def make_clip(path: Path, width: int, height: int, frames: int, fps: int = 24) -> Path:
    """An MP4 (H.264, AAC): a smooth picture drifting across the frame, with noise of sigma 25, and a tone."""
    import av

    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=fps, options={"crf": "12"})
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        sound = out.add_stream("aac", rate=48000, layout="mono")
        for k in range(frames):
            base = np.stack([0.5 + 0.4 * np.sin((x + 3 * k) / 23 + c) * np.cos(y / 17 - c) for c in range(3)], -1)
            noisy = np.clip(base * 255 + rng.normal(0, 25, base.shape), 0, 255).astype(np.uint8)
            frame = av.VideoFrame.from_ndarray(noisy, format="rgb24")
            frame.pts = k
            out.mux(video.encode(frame))
        out.mux(video.encode())
        samples = 48000 * frames // fps
        for start in range(0, samples, 1024):
            tone = 0.3 * np.sin(2 * np.pi * 440 * np.arange(start, min(start + 1024, samples)) / 48000)
            frame = av.AudioFrame.from_ndarray(tone.astype(np.float32)[None], format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 48000, start
            out.mux(sound.encode(frame))
        out.mux(sound.encode())
    return path


def network_ratio(model: ftn.TunableModel, plain: torch.nn.Module, clip: Path, repeats: int) -> tuple[list[float], float, float]:
    """Per frame, the model at alpha 0.5 timed next to the plain network (order alternating):
    (paired ratios, median ms of the plain network, max |difference| of the two outputs)."""
    import av

    with av.open(str(clip)) as c:
        frames = [torch.from_numpy(f.to_ndarray(format="rgb24")).permute(2, 0, 1).float()[None] / 255
                  for f in c.decode(video=0)]
    ratios, plain_ms, worst = [], [], 0.0
    with torch.inference_mode():
        for r in range(repeats):
            for i, x in enumerate(frames):
                timed = {}
                for which in ("plain", "model") if (r + i) % 2 == 0 else ("model", "plain"):
                    start = time.process_time()
                    out = plain(x) if which == "plain" else model(x, alpha=0.5)
                    timed[which] = (time.process_time() - start, out)
                (t_plain, y_plain), (t_model, y_model) = timed["plain"], timed["model"]
                ratios.append(t_model / t_plain)
                plain_ms.append(1e3 * t_plain)
                worst = max(worst, float((y_plain - y_model).abs().max()))
    return ratios, statistics.median(plain_ms), worst


def run_pipeline(model: ftn.TunableModel, plain: torch.nn.Module | None, clip: Path, out: Path,
                 schedule) -> tuple[float, float]:  # noqa: ANN001
    """(CPU seconds, wall seconds) of one process_video run; with ``plain``, the model's forward is replaced by
    the plain network's (everything else, apply_model's checks included, runs as for the model)."""
    if plain is not None:
        model.forward = lambda x, alpha=None, **_: plain(x)  # an instance attribute: nn.Module.__call__ uses it
    try:
        cpu, wall = time.process_time(), time.perf_counter()
        process_video(model, clip, out, schedule, tile=None, log=lambda _: None)
        return time.process_time() - cpu, time.perf_counter() - wall
    finally:
        model.__dict__.pop("forward", None)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="denoise", help="a shipped model's name or a file (default denoise)")
    parser.add_argument("--size", default="192x128", help="clip size WxH (default 192x128)")
    parser.add_argument("--frames", type=int, default=8, help="clip length in frames at 24 fps (default 8)")
    parser.add_argument("--repeats", type=int, default=2, help="round-robin repeats (default 2)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1: CPU time then is work, not spinning)")
    parser.add_argument("--out", default=str(DOCS / "video.md"), help="markdown file to write, or - for stdout only")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    width, height = (int(v) for v in args.size.lower().split("x"))
    model = ftn.load(resolve(args.model)).eval()
    plain = model.export(0.5).eval()
    configs = {
        "plain network (alpha 0.5 baked in)": (plain, build_schedule(model, alpha=0.5)),
        "constant alpha 0.5": (None, build_schedule(model, alpha=0.5)),
        "keyframed alpha 0 -> 1": (None, build_schedule(model, alpha=f"0s:0,{args.frames / 24:g}s:1")),
    }
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in configs}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        clip = make_clip(folder / "clip.mp4", width, height, args.frames)
        ramp = np.tile(np.linspace(0, 255, width).astype(np.uint8), (height, 1))
        from PIL import Image

        Image.fromarray(ramp).save(folder / "ramp.png")
        configs["per-pixel map (a ramp)"] = (None, build_schedule(model, alpha_map=str(folder / "ramp.png")))
        times["per-pixel map (a ramp)"] = []
        names = list(configs)
        for r in range(args.repeats):
            for name in names if r % 2 == 0 else names[::-1]:
                print(f"repeat {r + 1}/{args.repeats}: {name} ...", flush=True)
                network, schedule = configs[name]
                times[name].append(run_pipeline(model, network, clip, folder / "out.mp4", schedule))
        print("the network alone, frame by frame ...", flush=True)
        ratios, plain_ms, worst = network_ratio(model, plain, clip, args.repeats)

    plain_cpu = statistics.median(t[0] for t in times[names[0]])
    lines = [
        "# Video: frames per second against the plain network",
        "",
        f"Generated by `python -m benchmarks.video` on {datetime.date.today().isoformat()}: the shipped `{args.model}` "
        f"model on a generated {width}x{height} clip of {args.frames} frames at 24 fps (H.264 + AAC in MP4), "
        f"end to end through `ftn.infer.video.process_video` (decode, network, H.264 encode, audio copied), "
        f"{args.repeats} repeats round-robin, the order alternating. CPU, batch 1, no tiles.",
        "",
        f"Machine: {machine()}. A shared 2-core VM, busy with other jobs while this ran, so time is measured as the "
        "process's CPU time (`time.process_time`: the work done, not the time spent waiting for a core); the wall-clock "
        "rates beside it are what this busy machine gave and are not comparable between rows.",
        "",
        "| configuration | CPU s / frame (median) | CPU time / plain network's | frames/s, wall clock (median) |",
        "|---|---|---|---|",
    ]
    for name in names:
        cpu = statistics.median(t[0] for t in times[name])
        wall = statistics.median(t[1] for t in times[name])
        lines.append(f"| {name} | {cpu / args.frames:.3g} | {cpu / plain_cpu:.3f} | {args.frames / wall:.3g} |")
    low, high = median_ci(ratios)
    lines += [
        "",
        f"The network alone, per frame ({len(ratios)} pairs, each frame's plain forward and the model's at alpha 0.5 "
        f"back to back, CPU time): median ratio **{statistics.median(ratios):.3f}** (95% interval of the median {low:.3f} - "
        f"{high:.3f}); the plain network takes {plain_ms:.0f} ms of CPU time per frame here. The two outputs differ by at most "
        f"{worst:.1e}.",
        "",
        "A constant alpha (and a constant `--level`) blends each layer's kernel once; every frame then runs the plain "
        "network's convolutions (`docs/speed-fixed-alpha.md` shows they are the same ATen operators); what remains "
        "is the wrapper's per-layer Python work (finding the cached kernel), which small frames make visible and "
        "large ones hide (`docs/speed-fixed-alpha.md`: <= 1.02 from 256x256 up). Keyframed alpha "
        "blends the kernels again for each frame, as the alpha changes; a per-pixel map costs two convolutions per "
        "tuned layer (Eq. 3).",
        "",
        "## Use",
        "",
        "```",
        'pip install -e ".[video]"     # PyAV; its wheel carries FFmpeg',
        "ftn run -i clip.mp4 -o clean.mp4 --model denoise --level 30                 # constant",
        'ftn run -i clip.mp4 -o clean.mp4 --model denoise --alpha "0s:0.2,4s:0.8"     # keyframed: linear, held outside',
        "ftn run -i clip.mp4 -o clean.mp4 --model denoise --alpha-map mask.mp4       # frame k of the mask -> frame k",
        "ftn run -i clip.mp4 -o clean.mp4 --model denoise --level 30 --resume        # continue an interrupted run",
        'ftn run -i clip.mkv -o out.mkv --model restore.safetensors --alpha "sigma=0s:0.5;4s:1.5,quality=0.3"',
        "```",
        "",
        "Frames are decoded, processed and encoded one at a time (memory does not grow with the clip); each keeps its "
        "timestamp, so the frame rate (constant or variable) is kept. Audio streams are copied unchanged where the "
        "output container can hold them, else re-encoded (AAC; Opus in WebM); subtitles are dropped. Video is "
        "H.264 (VP9 for .webm) at `--crf 18`; `--codec ffv1` (in .mkv) is lossless. The work is done in segments of "
        "10 s in a hidden folder beside the output (`.NAME.ftn-video/`, with a manifest of the model's sha256, the "
        "setting, the input, the encoding and ftn's version); the output appears only when every segment is done, "
        "moved into place in one step. `--resume` keeps the finished segments of a run whose manifest matches in "
        "every respect and redoes the rest. A file that is not a video, a container that declares more frames than "
        "it holds, frames that change size mid-stream, or a mask video shorter than the input are refused in one "
        "line (exit status 2), and nothing is left at the output path.",
        "",
        "Not done: `--auto` on a video (an estimate per frame would flicker; give `--level`); rotation and HDR tags "
        "are not carried over, and frames are encoded from RGB with FFmpeg's default matrix (BT.601), untagged, so "
        "HD footage tagged BT.709 may shift slightly in colour; subtitle and data streams are dropped; frames that "
        "change size mid-stream are refused, not scaled.",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out != "-":
        Path(args.out).write_text(text)
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
