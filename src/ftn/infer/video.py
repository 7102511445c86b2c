"""Running a tunable model over a video, frame by frame (``ftn run -i clip.mp4 -o out.mp4``).

Needs PyAV (``pip install "ftn[video]"``; its wheel carries FFmpeg), imported on first use::

    from ftn.infer.video import build_schedule, process_video
    schedule = build_schedule(model, alpha="0s:0.2,4s:0.8")       # keyframes: linear between, held outside
    process_video(model, "clip.mp4", "out.mp4", schedule)

**The alpha over time** (:func:`build_schedule`, the vocabulary of :mod:`ftn.levels`): a constant
(``--alpha 0.3``, ``--level 50``), keyframes in seconds (``--alpha "0s:0.2,4s:0.8"``; several axes:
``--alpha "sigma=0s:0.5;4s:1.5,quality=0.3"``, the keys of one axis separated by ``;``), or per pixel
from a grey image (the same map on every frame) or a mask video (``--alpha-map mask.mp4``: grey frame
k is the alpha map of frame k; white = alpha 1, or an axis's K). A constant alpha is one blended
kernel per layer, computed once and reused on every frame (the methods' kernel cache): it costs what
the plain network costs (``benchmarks/video.py`` measures it, ``docs/video.md``).

**Streams.** Frames are decoded, processed and encoded one at a time (memory does not grow with
the clip's length). Each frame keeps its timestamp, so the frame rate (constant or variable) is
kept; audio streams are copied without re-encoding where the output container can hold their codec,
else re-encoded (AAC; Opus in WebM). Other streams (subtitles, data) are dropped. The video is
encoded with H.264 (VP9 for .webm; ``codec="ffv1"`` or ``"png"`` is lossless), without B-frames.

**Segments and --resume.** The video is encoded in segments of ``segment_seconds`` into a hidden work
folder beside the output (``.NAME.ftn-video/``) whose ``manifest.json`` records the model (sha256 of
its weights), the setting, the input (size, modification time), the encoding and ftn's version, and
every finished segment (frames, size, sha256). ``resume=True`` keeps the finished segments of a
manifest that matches in every respect and redoes the rest (a manifest that differs is discarded,
with a note). The output appears only when every segment is done: the segments and the audio are
muxed into a file in the work folder, which is then renamed over the output (atomic).

**Refusals** (:class:`VideoError`, one line): not a video or no video stream, frames that change
size mid-stream, a container that declares more frames than can be decoded (truncated or damaged),
a frame over :data:`MAX_PIXELS`, a mask video shorter than the input. Nothing is left at the output
path, and the work folder of a run refused for its input is removed.
"""

from __future__ import annotations

import hashlib
import heapq
import itertools
import json
import math
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "MAX_PIXELS",
    "VIDEO_SUFFIXES",
    "AxisPlan",
    "Schedule",
    "VideoError",
    "VideoResult",
    "build_schedule",
    "is_video",
    "process_video",
]

#: Suffixes read as videos (inputs and mask videos); outputs may be any of the first five.
VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".ts", ".mts", ".m2ts", ".mpg", ".mpeg", ".flv",
                  ".wmv", ".3gp", ".ogv")
_OUTPUT_SUFFIXES = VIDEO_SUFFIXES[:5]
#: The largest frame processed (8192 x 8192): far beyond real footage, far below what would exhaust memory.
MAX_PIXELS = 8192 * 8192
#: codec name -> (FFmpeg encoder, pixel format, encoder options; "{crf}" is filled in)
CODECS: dict[str, tuple[str, str, dict[str, str]]] = {
    "h264": ("libx264", "yuv420p", {"crf": "{crf}", "bf": "0"}),  # no B-frames: segments join without reordering
    "vp9": ("libvpx-vp9", "yuv420p", {"crf": "{crf}", "b": "0", "row-mt": "1"}),
    "ffv1": ("ffv1", "bgr0", {}),  # lossless RGB
    "png": ("png", "rgb24", {}),  # lossless RGB, one image per frame
}
_MANIFEST = "manifest.json"
_WORK_FORMAT = 1


class VideoError(ValueError):
    """A video (or mask video) that cannot be processed: reported as one line, exit status 2."""


def is_video(path: str | os.PathLike) -> bool:
    """Whether ``path`` names a video by its suffix (see :data:`VIDEO_SUFFIXES`)."""
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


def _av() -> Any:
    try:
        import av
    except ImportError:
        raise VideoError('videos need PyAV: pip install "ftn[video]" (or pip install av)') from None
    av.logging.set_level(av.logging.PANIC)  # FFmpeg's own chatter; errors reach us as exceptions
    return av


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return text or type(err).__name__


# -- the alpha over time -----------------------------------------------------------------------------


@dataclass(frozen=True)
class AxisPlan:
    """How one axis's alpha is set over a video.

    ``kind`` is ``"constant"`` (``value``), ``"keys"`` (``keys``: (seconds, alpha), linear between,
    held outside), ``"image"`` (a grey image at ``path``, the same map on every frame) or ``"video"``
    (a mask video at ``path``: its frame k is the map of frame k). A map's white is alpha ``scale``.
    """

    kind: str
    value: float = 0.0
    keys: tuple[tuple[float, float], ...] = ()
    path: str | None = None
    scale: float = 1.0
    words: str = ""

    def at(self, seconds: float) -> float:
        """The alpha at ``seconds`` for "constant" and "keys"."""
        if self.kind == "keys":
            times, values = zip(*self.keys, strict=True)
            return float(np.interp(seconds, times, values))
        return float(self.value)


@dataclass(frozen=True)
class Schedule:
    """The alpha of every frame: per axis an :class:`AxisPlan` (key None: a two-level model's one axis)."""

    axes: dict[str | None, AxisPlan]

    @property
    def words(self) -> str:
        """The setting in words, for the command's output."""
        return "; ".join(plan.words for plan in self.axes.values())

    def record(self) -> dict[str, Any]:
        """The setting as JSON for the resume manifest (map files by their sha256)."""
        out: dict[str, Any] = {}
        for name, plan in self.axes.items():
            entry: dict[str, Any] = {"kind": plan.kind}
            if plan.kind == "constant":
                entry["value"] = plan.value
            elif plan.kind == "keys":
                entry["keys"] = [list(k) for k in plan.keys]
            else:
                entry.update(sha256=_file_sha256(Path(str(plan.path))), scale=plan.scale)
            out[name or ""] = entry
        return out


def _axes_of(model: Any) -> list[tuple[str, int]] | None:
    from ..methods.axes import AxesModel

    return [(a.name, a.segments) for a in model.axes] if isinstance(model, AxesModel) else None


def build_schedule(
    model: Any,
    *,
    alpha: str | float | None = None,
    level: str | float | None = None,
    alpha_map: str | None = None,
    allow_extrapolation: bool = False,
    log: Callable[[str], None] = print,
) -> Schedule:
    """The alpha of each frame from ``ftn run``'s options (texts as typed, or numbers).

    A two-level model takes exactly one of: ``alpha`` (a number, or keyframes ``"0s:0.2,4s:0.8"``),
    ``level`` (one real level, through the model's calibration), ``alpha_map`` (a grey image or a mask
    video). A multi-axis model takes the per-axis forms of :func:`ftn.levels.parse_setting`, each axis
    once, and keyframes per axis in ``alpha`` (``"sigma=0s:0.5;4s:1.5,quality=0.3"``).

    Raises:
        ValueError: (one line) a malformed option, an alpha out of range, a level the model cannot turn
            into an alpha, a missing map file.
    """
    from ..levels import level_to_alpha, parse_keyframes, parse_setting, split_values

    alpha = None if alpha is None else str(alpha)
    level = None if level is None else str(level)
    if level is not None and ":" in level:
        raise ValueError("--level takes one level; keyframes over time are given in alpha (--alpha 0s:0.2,4s:0.8)")
    for path in [alpha_map] if alpha_map and "=" not in alpha_map else []:
        _check_map_file(path)
    axes = _axes_of(model)
    if axes is None:
        given = [o for o, v in (("--alpha", alpha), ("--level", level), ("--alpha-map", alpha_map)) if v is not None]
        if len(given) != 1:
            raise ValueError(f"choose the alpha with exactly one of --alpha, --level, --alpha-map (got {', '.join(given) or 'none'})")
        if alpha is not None and ":" in alpha:
            keys = parse_keyframes(alpha, "--alpha")
            for _, a in keys:
                _check_alpha(a, allow_extrapolation)
            words = "alpha " + ", ".join(f"{a:.4g} at {t:.4g}s" for t, a in keys) + " (linear between)"
            return Schedule({None: AxisPlan("keys", keys=keys, words=words)})
        if alpha is not None:
            a = _check_alpha(_number(alpha, "--alpha"), allow_extrapolation)
            return Schedule({None: AxisPlan("constant", value=a, words=f"alpha {a:.4g}")})
        if level is not None:
            a, note = level_to_alpha(model.metadata, _number(level, "--level"))
            if note:
                log(f"note: {note}")
            return Schedule({None: AxisPlan("constant", value=float(a), words=f"level {level} -> alpha {a:.4g}")})
        kind = "video" if is_video(alpha_map) else "image"
        return Schedule({None: AxisPlan(kind, path=alpha_map, words=f"alpha map {Path(alpha_map).name} ({kind})")})

    names = [n for n, _ in axes]
    segments = dict(axes)
    keyed: dict[str, str] = {}
    if alpha is not None and ":" in alpha:
        items = [i.strip() for i in alpha.split(",")]
        if any(":" in i and "=" not in i for i in items):
            raise ValueError("--alpha: name the axis of keyframes, e.g. --alpha 'sigma=0s:0.5;4s:1.5,quality=0.3' "
                             "(the keys of one axis separated by ';')")
        values = split_values(alpha, names, "--alpha")
        keyed = {n: v for n, v in values.items() if ":" in v}
        # the keyed axes take a placeholder, so that parse_setting still refuses an axis set twice
        alpha = ",".join(f"{n}={'0' if n in keyed else v}" for n, v in values.items())
    setting = parse_setting(axes, model.levels, alpha=alpha, level=level, alpha_map=alpha_map)
    plans: dict[str | None, AxisPlan] = {}
    for name, value in setting.items():
        if value.note:
            log(f"note: {value.note}")
        if name in keyed:
            keys = parse_keyframes(keyed[name], f"--alpha {name}=")
            for t, a in keys:
                if not 0.0 <= a <= segments[name]:
                    raise ValueError(f"--alpha {name}=...: {a:g} at {t:g}s is outside {name}'s range [0, {segments[name]}]")
            words = f"{name} alpha " + ", ".join(f"{a:.4g} at {t:.4g}s" for t, a in keys)
            plans[name] = AxisPlan("keys", keys=keys, words=words)
        elif value.source == "map":
            _check_map_file(value.path)
            kind = "video" if is_video(value.path) else "image"
            plans[name] = AxisPlan(kind, path=value.path, scale=float(segments[name]), words=f"{value.words} ({kind})")
        else:
            plans[name] = AxisPlan("constant", value=float(value.alpha or 0.0), words=value.words)
    return Schedule(plans)


def _check_map_file(path: str | None) -> None:
    if path is None or not Path(path).is_file():
        raise FileNotFoundError(f"alpha map not found: {path}")


def _number(text: str, option: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{option} needs a number, got {text!r}") from None
    if not math.isfinite(value):
        raise ValueError(f"{option} needs a finite number, got {text!r}")
    return value


def _check_alpha(alpha: float, allow_extrapolation: bool) -> float:
    from ..control import check_alpha

    try:
        return float(check_alpha(alpha, allow_extrapolation=allow_extrapolation))
    except ValueError as err:
        raise ValueError(str(err).replace("allow_extrapolation=True", "--allow-extrapolation")) from None


def _grey(rgb: Tensor) -> Tensor:
    """(3, H, W) or (1, H, W) in [0, 1] -> (1, 1, H, W): ITU-R BT.601 luma, as the image masks of ``ftn run``."""
    if rgb.shape[0] == 3:
        rgb = (rgb * torch.tensor([0.299, 0.587, 0.114], dtype=rgb.dtype).view(3, 1, 1)).sum(0, keepdim=True)
    return rgb[:1].clamp(0, 1)[None]


def _fit(mask: Tensor, size: tuple[int, int]) -> Tensor:
    if tuple(mask.shape[-2:]) == size:
        return mask
    shrinking = size[0] < mask.shape[-2] or size[1] < mask.shape[-1]
    return F.interpolate(mask, size=size, mode="bilinear", align_corners=False, antialias=shrinking).clamp(0, 1)


# -- reading -----------------------------------------------------------------------------------------


def _open(path: Path, what: str = "input") -> tuple[Any, Any]:
    """Open a video file: (container, its first video stream); a one-line VideoError otherwise."""
    av = _av()
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, UnicodeDecodeError, OSError) as err:
        raise VideoError(f"{path}: not a readable video ({_ffmpeg_words(err)})") from None
    if not container.streams.video:
        container.close()
        raise VideoError(f"{path}: has no video stream")
    stream = container.streams.video[0]
    declared = (stream.codec_context.width or 0) * (stream.codec_context.height or 0)
    if declared > MAX_PIXELS:  # refused before a frame of that size is decoded
        container.close()
        raise VideoError(f"{path}: declares {stream.codec_context.width}x{stream.codec_context.height} frames, "
                         f"over the {MAX_PIXELS:,}-pixel limit")
    stream.thread_type = "AUTO"
    return container, stream


def _ffmpeg_words(err: BaseException) -> str:
    return _one_line(getattr(err, "strerror", None) or err)


@dataclass
class _Frame:
    index: int
    pts: int
    seconds: float  # since the first frame
    image: Tensor  # (3, H, W) float in [0, 1]


def _frames(path: Path, container: Any, stream: Any, log: Callable[[str], None]) -> Iterator[_Frame]:
    """The frames of ``stream``, checked: one size throughout, at most MAX_PIXELS, increasing timestamps
    (missing or repeated ones are repaired from the frame rate, with a note), every declared frame there."""
    av = _av()
    time_base = stream.time_base or Fraction(1, 1000)
    rate = stream.average_rate or stream.guessed_rate or Fraction(25)
    step = max(1, round(1 / (float(rate) * float(time_base))))
    size: tuple[int, int] | None = None
    first = previous = None
    repaired = False
    index = 0
    try:
        for frame in container.decode(stream):
            if frame.width * frame.height > MAX_PIXELS:
                raise VideoError(f"{path}: frame {index} is {frame.width}x{frame.height}, over the {MAX_PIXELS:,}-pixel limit")
            if size is None:
                size = (frame.width, frame.height)
            elif (frame.width, frame.height) != size:
                raise VideoError(
                    f"{path}: frame {index} is {frame.width}x{frame.height} but the video began at {size[0]}x{size[1]}; "
                    "videos whose frames change size are not supported (scale them to one size first)"
                )
            pts = frame.pts
            if pts is None or (previous is not None and pts <= previous):
                pts = 0 if previous is None else previous + step
                if not repaired:
                    log(f"note: {path.name}: missing or out-of-order timestamps from frame {index} on; repaired from {float(rate):.4g} fps")
                    repaired = True
            first = pts if first is None else first
            previous = pts
            image = torch.from_numpy(frame.to_ndarray(format="rgb24")).permute(2, 0, 1).float().div_(255)
            yield _Frame(index, pts, float((pts - first) * time_base), image)
            index += 1
    except av.error.FFmpegError as err:
        raise VideoError(f"{path}: damaged at frame {index} ({_ffmpeg_words(err)})") from None
    declared = int(stream.frames or 0)
    if index == 0:
        raise VideoError(f"{path}: no frame could be decoded")
    if declared and index < declared:
        raise VideoError(f"{path}: the container declares {declared} frames but only {index} could be decoded (truncated or damaged)")


class _MaskVideo:
    """A mask video read in step with the input: frame k -> the grey map of frame k."""

    def __init__(self, path: Path, log: Callable[[str], None]) -> None:
        self.path = path
        self.container, stream = _open(path, "alpha map")
        self.frames = _frames(path, self.container, stream, log)

    def next(self, index: int) -> Tensor:
        try:
            frame = next(self.frames)
        except StopIteration:
            raise VideoError(f"alpha map {self.path}: ends after {index} frames, before the input does") from None
        return _grey(frame.image)

    def close(self) -> None:
        self.frames.close()
        self.container.close()


# -- writing -----------------------------------------------------------------------------------------


class _Encoder:
    """One segment's video file: frames in, encoded with the input's time base."""

    def __init__(self, path: Path, codec: str, crf: int, size: tuple[int, int], rate: Fraction, time_base: Fraction) -> None:
        av = _av()
        encoder, pix_fmt, options = CODECS[codec]
        self.container = av.open(str(path), "w")
        opts = {k: v.format(crf=crf) for k, v in options.items()}
        self.stream = self.container.add_stream(encoder, rate=rate, options=opts)
        self.stream.width, self.stream.height = size
        self.stream.pix_fmt = pix_fmt
        self.stream.time_base = time_base
        self.stream.codec_context.time_base = time_base
        self.time_base = time_base

    def write(self, image: Tensor, pts: int) -> None:
        av = _av()
        array = image.mul(255).round_().clamp_(0, 255).to(torch.uint8).permute(1, 2, 0).contiguous().numpy()
        frame = av.VideoFrame.from_ndarray(array, format="rgb24")
        frame.pts, frame.time_base = pts, self.time_base
        for packet in self.stream.encode(frame):
            self.container.mux(packet)

    def close(self) -> None:
        for packet in self.stream.encode():
            self.container.mux(packet)
        self.container.close()

    def abandon(self) -> None:
        try:
            self.container.close()
        except Exception:  # noqa: BLE001  (the partial file is deleted next)
            pass


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _model_sha256(model: Any) -> str:
    """sha256 over the model's tensors (names, dtypes, shapes, bytes): what actually runs."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


# -- the run -----------------------------------------------------------------------------------------


@dataclass
class VideoResult:
    """What :func:`process_video` did."""

    input: str
    output: str
    frames: int
    fps: float  # the input's average frame rate
    width: int
    height: int
    segments: int
    segments_reused: int  # finished by an earlier run (--resume)
    audio: list[str] = field(default_factory=list)  # per audio stream: "aac copied", "pcm_s16le -> aac", ...
    setting: str = ""
    seconds: float = 0.0

    @property
    def line(self) -> str:
        audio = ", ".join(self.audio) or "no audio"
        reused = f", {self.segments_reused} of {self.segments} segments from an earlier run" if self.segments_reused else ""
        speed = (self.frames / self.seconds) if self.seconds else 0.0
        return (f"{Path(self.input).name} -> {self.output}: {self.frames} frames {self.width}x{self.height} at "
                f"{self.fps:.4g} fps, {self.setting}; audio: {audio}{reused}; {self.seconds:.1f} s ({speed:.3g} frames/s)")


def work_folder(dst: str | os.PathLike) -> Path:
    """Where the segments of ``dst`` are kept until the run is complete (hidden, beside it)."""
    dst = Path(dst)
    return dst.parent / f".{dst.name}.ftn-video"


def process_video(
    model: Any,
    src: str | os.PathLike,
    dst: str | os.PathLike,
    schedule: Schedule,
    *,
    codec: str | None = None,
    crf: int = 18,
    segment_seconds: float = 10.0,
    resume: bool = False,
    tile: int | str | None = "auto",
    overlap: int = 64,
    audio: str = "copy",
    log: Callable[[str], None] = print,
) -> VideoResult:
    """Run ``model`` over every frame of the video ``src`` at ``schedule``'s alpha; write ``dst``.

    Args:
        model: a :class:`~ftn.TunableModel` or :class:`~ftn.methods.axes.AxesModel` (as for
            :func:`~ftn.infer.apply_model`).
        schedule: from :func:`build_schedule`.
        codec: ``"h264"`` (default; ``"vp9"`` for .webm), ``"vp9"``, or lossless ``"ffv1"`` / ``"png"``.
        crf: quality of h264 / vp9 (lower is better; 18 is near transparent).
        segment_seconds: the unit of ``resume``: finished segments of an interrupted run are kept.
        resume: keep the finished segments of an earlier run of the same model, setting, input and
            encoding (see the module docstring); without it an earlier run's segments are discarded.
        tile, overlap: as :func:`~ftn.infer.apply_model`, per frame.
        audio: ``"copy"`` (remux where the container can hold the codec, else re-encode) or ``"encode"``.
        log: where one-line notes go.

    Raises:
        VideoError: the input or a mask video cannot be processed (see the module docstring).
        ValueError: an unknown codec, an output suffix that is not a video container, output == input.
    """
    start = time.perf_counter()
    src, dst = Path(src), Path(dst)
    suffix = dst.suffix.lower()
    if suffix not in _OUTPUT_SUFFIXES:
        raise ValueError(f"cannot write a video to {dst} (use a suffix among {', '.join(_OUTPUT_SUFFIXES)})")
    codec = codec or ("vp9" if suffix == ".webm" else "h264")
    if codec not in CODECS:
        raise ValueError(f"unknown video codec {codec!r} (choose among {', '.join(CODECS)})")
    if not (isinstance(crf, int) and 0 <= crf <= 63):
        raise ValueError(f"crf must be a whole number in [0, 63], got {crf!r}")
    if not (math.isfinite(segment_seconds) and segment_seconds > 0):
        raise ValueError(f"segment_seconds must be > 0, got {segment_seconds!r}")
    if audio not in ("copy", "encode"):
        raise ValueError(f"audio must be 'copy' or 'encode', got {audio!r}")
    if not dst.parent.is_dir():
        raise FileNotFoundError(f"output folder does not exist: {dst.parent}")
    sources = [src] + [Path(str(p.path)) for p in schedule.axes.values() if p.path]
    if dst.exists() and any(dst.resolve() == s.resolve() for s in sources if s.exists()):
        raise ValueError(f"the output {dst} is one of the inputs; choose another output file")
    av = _av()
    _check_container(av, suffix, CODECS[codec][0], dst)

    container, stream = _open(src)
    work = work_folder(dst)
    masks: dict[str | None, _MaskVideo] = {}
    try:
        rate = stream.average_rate or stream.guessed_rate or Fraction(25)
        time_base = stream.time_base or Fraction(1, 1000)
        per_segment = max(1, round(float(rate) * segment_seconds))
        identity = {
            "ftn_video_work": _WORK_FORMAT, "version": _version(), "model_sha256": _model_sha256(model),
            "setting": schedule.record(),
            "input": {"path": str(src.resolve()), "size": src.stat().st_size, "mtime_ns": src.stat().st_mtime_ns},
            "encoding": {"codec": codec, "crf": crf, "suffix": suffix, "segment_frames": per_segment,
                         "time_base": str(time_base), "rate": str(rate)},
            "processing": {"tile": tile, "overlap": overlap},
        }
        done = _prepare_work(work, identity, resume, log)
        reused = len(done)
        statics = {name: _grey(_load_image(Path(str(p.path)))) for name, p in schedule.axes.items() if p.kind == "image"}
        masks = {name: _MaskVideo(Path(str(p.path)), log) for name, p in schedule.axes.items() if p.kind == "video"}
        total = _frame_estimate(container, stream, rate, time_base)
        frames, size = _run_frames(
            model, src, container, stream, schedule, statics, masks, work, identity, done,
            codec=codec, crf=crf, rate=rate, time_base=time_base, per_segment=per_segment, tile=tile, overlap=overlap,
            total=total, log=log,
        )
    except VideoError:
        shutil.rmtree(work, ignore_errors=True)  # refused for its input: it can never complete
        raise
    finally:
        for mask in masks.values():
            mask.close()
        container.close()

    segments = (frames + per_segment - 1) // per_segment
    final = work / f"final{suffix}"
    described = _assemble(av, src, final, [work / _segment_name(i, suffix) for i in range(segments)], audio, log)
    from ..io import move_into_place

    move_into_place(final, dst)
    shutil.rmtree(work, ignore_errors=True)
    width, height = size
    return VideoResult(
        input=str(src), output=str(dst), frames=frames, fps=float(rate), width=width, height=height, segments=segments,
        segments_reused=reused, audio=described, setting=schedule.words,
        seconds=round(time.perf_counter() - start, 3),
    )


def _frame_estimate(container: Any, stream: Any, rate: Fraction, time_base: Fraction) -> int | None:
    """How many frames the progress bar expects: as declared, else from the duration (None: unknown)."""
    if stream.frames:
        return int(stream.frames)
    seconds = float(stream.duration * time_base) if stream.duration else (container.duration or 0) / 1e6
    return round(seconds * float(rate)) or None


def _version() -> str:
    from .. import __version__

    return __version__


def _load_image(path: Path) -> Tensor:
    from ..data.images import load_image

    return load_image(path).image


def _check_container(av: Any, suffix: str, encoder: str, dst: Path) -> None:
    """Refuse, before any work, a codec the output container cannot hold (e.g. ffv1 in .mp4)."""
    probe = av.open(os.devnull, "w", format=_format_name(suffix))
    try:
        name = av.codec.Codec(encoder, "w").name
        if name not in probe.supported_codecs:
            raise ValueError(f"{dst.suffix} files cannot hold {name} video; choose another codec or a .mkv output")
    finally:
        probe.close()


def _format_name(suffix: str) -> str:
    return {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska", ".webm": "webm"}[suffix]


def _segment_name(index: int, suffix: str) -> str:
    return f"segment-{index:05d}{suffix}"


def _prepare_work(work: Path, identity: dict[str, Any], resume: bool, log: Callable[[str], None]) -> dict[int, dict[str, Any]]:
    """The work folder, ready: with resume and a matching manifest, its finished segments that are
    intact (size and sha256 as recorded) by index; otherwise emptied, and {}."""
    manifest = work / _MANIFEST
    kept: dict[int, dict[str, Any]] = {}
    if work.exists() and not work.is_dir():
        raise ValueError(f"{work} is in the way of the work folder; move it away")
    if work.is_dir():
        try:
            earlier = json.loads(manifest.read_text())
            earlier = earlier if isinstance(earlier, dict) else {}
        except (OSError, ValueError):
            earlier = {}
        same = {k: v for k, v in earlier.items() if k != "segments"} == identity
        if resume and same:
            for entry in earlier.get("segments", []):
                try:
                    path = work / str(entry["file"])
                    intact = path.is_file() and path.stat().st_size == entry["size"] > 0 and _file_sha256(path) == entry["sha256"]
                    if intact:
                        kept[int(entry["index"])] = entry
                except (KeyError, TypeError, ValueError, OSError):
                    continue
            log(f"--resume: {len(kept)} finished segments kept from {work}")
        elif resume:
            what = [k for k in identity if earlier.get(k) != identity[k]] or ["manifest"]
            log(f"--resume: the earlier run in {work} differs ({', '.join(what)}); starting over")
        else:
            log(f"note: an earlier unfinished run in {work} is discarded (--resume keeps its finished segments)")
        if not kept:
            shutil.rmtree(work)
    work.mkdir(exist_ok=True)
    for stale in work.iterdir():  # partial segments, an unfinished final file, segments not kept
        if stale.name != _MANIFEST and not any(stale.name == e["file"] for e in kept.values()):
            stale.unlink()
    _write_manifest(work, identity, kept)
    return kept


def _write_manifest(work: Path, identity: dict[str, Any], segments: dict[int, dict[str, Any]]) -> None:
    tmp = work / f"{_MANIFEST}.tmp"
    tmp.write_text(json.dumps({**identity, "segments": [segments[i] for i in sorted(segments)]}, indent=1) + "\n")
    os.replace(tmp, work / _MANIFEST)


def _run_frames(
    model: Any, src: Path, container: Any, stream: Any, schedule: Schedule, statics: dict[str | None, Tensor],
    masks: dict[str | None, _MaskVideo], work: Path, identity: dict[str, Any], done: dict[int, dict[str, Any]], *,
    codec: str, crf: int, rate: Fraction, time_base: Fraction, per_segment: int, tile: int | str | None, overlap: int,
    total: int | None, log: Callable[[str], None],
) -> tuple[int, tuple[int, int]]:
    """Decode, process and encode every frame not in a finished segment; returns (frames, output size)."""
    from tqdm import tqdm

    from .apply import apply_model

    suffix = identity["encoding"]["suffix"]
    encoder: _Encoder | None = None
    partial: Path | None = None
    segment = -1
    count = 0
    size = (0, 0)

    def finish() -> None:
        nonlocal encoder
        if encoder is None:
            return
        encoder.close()
        encoder = None
        final = work / _segment_name(segment, suffix)
        os.replace(partial, final)  # type: ignore[arg-type]
        first = segment * per_segment
        done[segment] = {"index": segment, "first_frame": first, "frames": count - first, "file": final.name,
                         "size": final.stat().st_size, "sha256": _file_sha256(final)}
        _write_manifest(work, identity, done)

    bar = tqdm(total=total, desc=src.name, unit="frame", file=sys.stderr, disable=None, leave=False)
    try:
        for frame in _frames(src, container, stream, log):
            maps = {name: mask.next(frame.index) for name, mask in masks.items()}  # in step, even when skipped
            k = frame.index // per_segment
            if k in done:
                size = _reused_size(size, work / done[k]["file"])
                count = frame.index + 1
                bar.update(1)
                continue
            if k != segment:
                finish()
                segment = k
            setting = _setting_at(schedule, frame, statics, maps)
            if tile == "auto":  # sized once from free memory, not per frame (the probe costs a forward pass)
                tile = _auto_tile(model, frame.image)
            out = apply_model(model, frame.image, alpha=setting, tile=tile, overlap=overlap)
            if encoder is None:
                size = (int(out.shape[-1]), int(out.shape[-2]))
                if CODECS[codec][1] == "yuv420p" and (size[0] % 2 or size[1] % 2):
                    raise VideoError(f"{codec} (yuv420p) needs an even width and height; the output is {size[0]}x{size[1]}: "
                                     "use codec ffv1 (lossless, .mkv)")
                partial = work / f"segment-{k:05d}.part{suffix}"
                encoder = _Encoder(partial, codec, crf, size, rate, time_base)
            encoder.write(out, frame.pts)
            count = frame.index + 1
            bar.update(1)
        finish()
    except BaseException:
        if encoder is not None:
            encoder.abandon()
            partial.unlink(missing_ok=True)  # type: ignore[union-attr]
        raise
    finally:
        bar.close()
    if count == 0:
        raise VideoError(f"{src}: no frame could be decoded")
    return count, size


def _auto_tile(model: Any, image: Tensor) -> int | None:
    """``tile="auto"`` of :func:`~ftn.infer.apply_model`, decided once for frames of ``image``'s size."""
    from ..methods.base import image_channels
    from .tiling import auto_tile_size

    param = next(iter(model.parameters()), None)
    device = param.device if param is not None else torch.device("cpu")
    align = int(getattr(model.base_network, "size_multiple", 1))
    side = auto_tile_size(model, image_channels(model.base_network), device, multiple=max(16, align))
    return side if max(image.shape[-2:]) > side else None


def _reused_size(size: tuple[int, int], path: Path) -> tuple[int, int]:
    """The output size of a finished segment (read once from its file)."""
    if size != (0, 0):
        return size
    container, stream = _open(path, "segment")
    try:
        return (stream.width, stream.height)
    finally:
        container.close()


def _setting_at(schedule: Schedule, frame: _Frame, statics: dict[str | None, Tensor], maps: dict[str | None, Tensor]) -> Any:
    """The alpha of one frame: a number or a (1, 1, H, W) map; a dict per axis for a multi-axis model."""
    size = tuple(frame.image.shape[-2:])
    values: dict[str | None, float | Tensor] = {}
    for name, plan in schedule.axes.items():
        if plan.kind in ("image", "video"):
            grey = statics[name] if plan.kind == "image" else maps[name]
            values[name] = _fit(grey, size) * plan.scale
        else:
            values[name] = plan.at(frame.seconds)
    return values[None] if None in values else values


# -- joining segments and audio ----------------------------------------------------------------------


def _assemble(av: Any, src: Path, final: Path, segments: list[Path], audio: str, log: Callable[[str], None]) -> list[str]:
    """Mux the finished segments (copied, not re-encoded) and the input's audio into ``final``,
    interleaved by time; returns the audio streams in words. A copy the muxer refuses is re-encoded."""
    try:
        return _mux(av, src, final, segments, audio)
    except av.error.FFmpegError as err:
        if audio != "copy":
            raise VideoError(f"cannot write {final.name}: {_ffmpeg_words(err)}") from None
        log(f"note: copying the audio failed ({_ffmpeg_words(err)}); re-encoding it")
        final.unlink(missing_ok=True)
        return _mux(av, src, final, segments, "encode")


def _mux(av: Any, src: Path, final: Path, segments: list[Path], audio: str) -> list[str]:
    suffix = final.suffix.lower()
    options = {"movflags": "+faststart"} if suffix in (".mp4", ".m4v", ".mov") else {}
    out = av.open(str(final), "w", options=options)
    source = av.open(str(src))
    first = av.open(str(segments[0]))
    try:
        video = out.add_stream_from_template(first.streams.video[0])
        first.close()
        tracks: list[Iterator[tuple[float, int, Any]]] = [_video_packets(av, segments, video)]
        words = []
        fallback = "libopus" if suffix == ".webm" else "aac"
        for stream in source.streams.audio:
            name = stream.codec_context.name
            if audio == "copy" and name in out.supported_codecs:
                target = out.add_stream_from_template(stream)
                tracks.append(_copied(av, src, stream.index, target))
                words.append(f"{name} copied")
            else:
                layout = stream.layout.name  # "N channels" (no channel order, e.g. PCM in MKV) -> FFmpeg's default for N
                layout = f"{stream.codec_context.channels}c" if layout.endswith("channels") else layout
                target = out.add_stream(fallback, rate=stream.rate, layout=layout)
                tracks.append(_encoded(av, src, stream.index, target))
                words.append(f"{name} -> {target.codec_context.name}")
        # each track reads its own file handle, so that packets can be taken from each in time order
        order = itertools.count()
        for _, _, packet in heapq.merge(*(((t, next(order), p) for t, _, p in track) for track in tracks)):
            out.mux(packet)
        return words
    finally:
        out.close()
        source.close()


def _seconds(packet: Any) -> float:
    """When a packet is due, for interleaving (its dts, else its pts; 0 when it has neither)."""
    stamp = packet.dts if packet.dts is not None else packet.pts
    return float(stamp * packet.time_base) if stamp is not None and packet.time_base else 0.0


def _video_packets(av: Any, segments: list[Path], target: Any) -> Iterator[tuple[float, int, Any]]:
    for path in segments:
        container = av.open(str(path))
        try:
            for packet in container.demux(container.streams.video[0]):
                if packet.dts is None:  # the demuxer's end-of-stream marker
                    continue
                packet.stream = target
                yield _seconds(packet), 0, packet
        finally:
            container.close()


def _copied(av: Any, src: Path, index: int, target: Any) -> Iterator[tuple[float, int, Any]]:
    """The packets of one audio stream, unchanged."""
    container = av.open(str(src))
    try:
        own = container.streams[index]
        for packet in container.demux(own):
            if packet.dts is None:
                continue
            packet.stream = target
            yield _seconds(packet), 1, packet
    finally:
        container.close()


def _encoded(av: Any, src: Path, index: int, target: Any) -> Iterator[tuple[float, int, Any]]:
    """One audio stream decoded and re-encoded for ``target``."""
    container = av.open(str(src))
    try:
        own = container.streams[index]
        for packet in container.demux(own):
            for frame in packet.decode():
                for out in target.encode(frame):
                    yield _seconds(out), 1, out
        for out in target.encode():
            yield _seconds(out), 1, out
    finally:
        container.close()
