"""Tests for ftn.infer.video (``ftn run`` on a video) and ftn.levels.parse_keyframes.

Every clip is generated here with PyAV: 64x48, 12 frames at 24 fps, with a sine tone. The exactness
checks use a lossless codec (FFV1, RGB) in and out, so frame k of the output must equal the model run
on decoded input frame k at the alpha the schedule gives it, up to the 8-bit rounding.
"""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch

import ftn
import ftn.infer.apply as apply_module
from ftn.infer import apply_model
from ftn.infer.video import VideoError, build_schedule, process_video, work_folder
from ftn.levels import parse_keyframes

W, H, N, FPS = 64, 48, 12, 24
RATE = 48000
TOL = 1 / 255 + 1e-6


def tiny_model(seed: int = 0) -> ftn.TunableModel:
    torch.manual_seed(seed)
    net = ftn.build_arch("adafm_net", size="mini", channels=8, blocks=1, image_skip=True)
    model = ftn.attach(net, "ftn", groups=4)
    with torch.no_grad():  # move the tuner away from identity so that alpha matters
        for p in model.tuner_parameters():
            p.add_(0.3 * torch.randn_like(p))
    return model.eval()


@pytest.fixture(scope="module")
def model() -> ftn.TunableModel:
    return tiny_model()


def picture(k: int, w: int = W, h: int = H) -> np.ndarray:
    """Frame k of the test clip: smooth gradients that move from frame to frame, plus some texture."""
    yy, xx = np.mgrid[0:h, 0:w]
    rng = np.random.default_rng(k)
    img = np.stack([(xx * 3 + k * 9) % 256, (yy * 4 + k * 5) % 256, (xx + yy) * 2 % 256], -1).astype(np.float64)
    return np.clip(img + rng.normal(0, 12, img.shape), 0, 255).astype(np.uint8)


def make_clip(path: Path, *, codec: str = "ffv1", pix_fmt: str = "bgr0", audio: str | None = "pcm_s16le",
              frames: list[np.ndarray] | None = None, options: dict[str, str] | None = None) -> Path:
    """Write a clip: ``frames`` (default: N pictures) at FPS, with a 440 Hz tone as long as the video."""
    frames = frames if frames is not None else [picture(k) for k in range(N)]
    out = av.open(str(path), "w", options=options or {})
    video = out.add_stream(codec, rate=FPS)
    video.width, video.height, video.pix_fmt = frames[0].shape[1], frames[0].shape[0], pix_fmt
    sound = out.add_stream(audio, rate=RATE, layout="mono") if audio else None
    for k, array in enumerate(frames):
        frame = av.VideoFrame.from_ndarray(array, format="rgb24")
        frame.pts = k
        out.mux(video.encode(frame))
    out.mux(video.encode())
    if sound is not None:
        samples = RATE * len(frames) // FPS
        tone = 0.3 * np.sin(2 * np.pi * 440 * np.arange(samples) / RATE)
        fmt = sound.codec_context.codec.audio_formats[0].name
        for start in range(0, samples, 1024):
            chunk = tone[start : start + 1024]
            data = chunk.astype(np.float32)[None] if fmt == "fltp" else (chunk * 32767).astype(np.int16)[None]
            frame = av.AudioFrame.from_ndarray(data, format="fltp" if fmt == "fltp" else "s16", layout="mono")
            frame.sample_rate, frame.pts = RATE, start
            out.mux(sound.encode(frame))
        out.mux(sound.encode())
    out.close()
    return path


def decode(path: Path) -> tuple[list[np.ndarray], list[float]]:
    """Every frame (H, W, 3 uint8) and its time in seconds."""
    with av.open(str(path)) as c:
        frames = list(c.decode(video=0))
    return [f.to_ndarray(format="rgb24") for f in frames], [float(f.pts * f.time_base) for f in frames]


def audio_seconds(path: Path) -> float:
    """Decoded audio length in seconds (samples / rate), summed over the first audio stream."""
    with av.open(str(path)) as c:
        stream = c.streams.audio[0]
        samples = sum(f.samples for f in c.decode(stream))
        return samples / stream.rate


def as_tensor(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(array).permute(2, 0, 1).float() / 255


def expected_frame(model: ftn.TunableModel, array: np.ndarray, alpha: float | torch.Tensor) -> np.ndarray:
    out = apply_model(model, as_tensor(array), alpha=alpha)
    return (out * 255).round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()


def assert_no_output(dst: Path) -> None:
    assert not dst.exists(), "a refused run left an output file"
    assert not work_folder(dst).exists(), "a refused run left its work folder"


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("clips")
    return {
        "lossless": make_clip(folder / "clip.mkv"),
        "mp4": make_clip(folder / "clip.mp4", codec="libx264", pix_fmt="yuv420p", audio="aac"),
    }


# -- keyframes (ftn.levels) ----------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "keys"), [
    ("0s:0.2,4s:0.8", ((0.0, 0.2), (4.0, 0.8))),
    ("4:1;0.5s:0", ((0.5, 0.0), (4.0, 1.0))),  # any order; ';' separates too; the 's' is optional
    ("2.5s:0.3", ((2.5, 0.3),)),
    (" 0s : 1 , 1S:2 ", ((0.0, 1.0), (1.0, 2.0))),
])
def test_parse_keyframes(text: str, keys: tuple) -> None:
    assert parse_keyframes(text) == keys


@pytest.mark.parametrize(("text", "words"), [
    ("", "empty keyframe"),
    ("0s:0.2,", "empty keyframe"),
    ("0.5", "not TIME:VALUE"),
    ("0s:", "not TIME:VALUE"),
    ("1x:0.2", "not a number of seconds"),
    ("-1s:0.2", ">= 0"),
    ("infs:0.2", ">= 0"),
    ("0s:nan", "finite"),
    ("0s:abc", "not a number"),
    ("0s:1,0:2", "two keyframes at 0s"),
])
def test_parse_keyframes_refuses(text: str, words: str) -> None:
    with pytest.raises(ValueError, match=words) as err:
        parse_keyframes(text)
    assert "\n" not in str(err.value)


# -- the frames, the rate, the audio ----------------------------------------------------------------------


def test_keyframed_alpha_frame_by_frame(model: ftn.TunableModel, clips: dict[str, Path], tmp_path: Path) -> None:
    src, dst = clips["lossless"], tmp_path / "out.mkv"
    schedule = build_schedule(model, alpha="0s:0.2,0.25s:0.8")
    result = process_video(model, src, dst, schedule, codec="ffv1", segment_seconds=0.25, log=lambda _: None)
    assert result.frames == N and result.segments == 2 and result.audio == ["pcm_s16le copied"]
    inputs, times = decode(src)
    outputs, out_times = decode(dst)
    assert len(outputs) == N and out_times == times  # every frame, at its own time
    with av.open(str(dst)) as c:
        assert c.streams.video[0].average_rate == FPS
    assert audio_seconds(dst) == pytest.approx(audio_seconds(src)) == pytest.approx(N / FPS)
    for k, (x, y) in enumerate(zip(inputs, outputs)):
        alpha = float(np.interp(times[k], [0.0, 0.25], [0.2, 0.8]))
        diff = np.abs(y.astype(int) - expected_frame(model, x, alpha).astype(int)).max()
        assert diff <= 1, f"frame {k} (alpha {alpha:.3f}) is off by {diff}"
    # and alpha matters: the last frame is not what the first key's alpha gives
    assert np.abs(outputs[-1].astype(int) - expected_frame(model, inputs[-1], 0.2).astype(int)).max() > 3


def test_mp4_keeps_rate_timestamps_and_audio(model: ftn.TunableModel, clips: dict[str, Path], tmp_path: Path) -> None:
    src, dst = clips["mp4"], tmp_path / "out.mp4"
    result = process_video(model, src, dst, build_schedule(model, alpha=0.5), segment_seconds=0.25, log=lambda _: None)
    assert result.audio == ["aac copied"] and result.segments == 2  # H.264 segments joined without re-encoding
    inputs, times = decode(src)
    frames, out_times = decode(dst)
    assert len(frames) == N and out_times == pytest.approx(times)
    for k in (0, N - 1):  # both segments decode to the picture (H.264 at crf 18 and 4:2:0 lose a little)
        error = np.abs(frames[k].astype(int) - expected_frame(model, inputs[k], 0.5).astype(int)).mean()
        assert error < 6, f"frame {k}: mean error {error:.1f} levels"
    with av.open(str(dst)) as c:
        video, sound = c.streams.video[0], c.streams.audio[0]
        assert video.average_rate == FPS and video.codec_context.name == "h264"
        assert sound.codec_context.name == "aac"
    assert audio_seconds(dst) == pytest.approx(audio_seconds(src), abs=1e-3)


def test_audio_reencoded_where_the_container_cannot_hold_it(model: ftn.TunableModel, clips: dict[str, Path], tmp_path: Path) -> None:
    dst = tmp_path / "out.mkv"
    result = process_video(model, clips["lossless"], dst, build_schedule(model, alpha=0.5), codec="ffv1",
                           audio="encode", log=lambda _: None)
    assert result.audio == ["pcm_s16le -> aac"]
    assert audio_seconds(dst) == pytest.approx(N / FPS, abs=0.05)  # AAC pads to whole frames of 1024 samples


def test_mask_video_sets_alpha_per_pixel_per_frame(model: ftn.TunableModel, clips: dict[str, Path], tmp_path: Path) -> None:
    def mask(k: int) -> np.ndarray:  # left half black, right half a grey that grows with k
        grey = np.zeros((H, W, 3), np.uint8)
        grey[:, W // 2 :] = round(255 * k / (N - 1))
        return grey

    masks = make_clip(tmp_path / "mask.mkv", frames=[mask(k) for k in range(N)], audio=None)
    dst = tmp_path / "out.mkv"
    schedule = build_schedule(model, alpha_map=str(masks))
    assert schedule.axes[None].kind == "video"
    process_video(model, clips["lossless"], dst, schedule, codec="ffv1", log=lambda _: None)
    inputs, _ = decode(clips["lossless"])
    outputs, _ = decode(dst)
    assert len(outputs) == N
    for k in (0, 5, N - 1):
        amap = as_tensor(mask(k))[:1][None]  # grey frames: luma == any channel
        diff = np.abs(outputs[k].astype(int) - expected_frame(model, inputs[k], amap).astype(int)).max()
        assert diff <= 1, f"frame {k} is off by {diff}"
    short = make_clip(tmp_path / "short.mkv", frames=[mask(k) for k in range(N // 2)], audio=None)
    with pytest.raises(VideoError, match="ends after 6 frames"):
        process_video(model, clips["lossless"], tmp_path / "bad.mkv", build_schedule(model, alpha_map=str(short)),
                      codec="ffv1", log=lambda _: None)
    assert_no_output(tmp_path / "bad.mkv")


def test_multi_axis_keyframes_and_image_map(clips: dict[str, Path], tmp_path: Path) -> None:
    from PIL import Image

    from ftn.methods.axes import AxisSpec, attach_axes

    torch.manual_seed(0)
    net = ftn.build_arch("adafm_net", size="mini", channels=8, blocks=1, image_skip=True)
    model = attach_axes(net, "ftn", [AxisSpec("sigma", 3, levels=(5, 25, 50)), AxisSpec("quality", 2, levels=(90, 10))],
                        groups=4)
    with torch.no_grad():
        for p in model.tuner_parameters():
            p.add_(0.05 * torch.randn_like(p))
    model.eval()
    grey = (np.mgrid[0:H, 0:W][1] * 255 // (W - 1)).astype(np.uint8)  # black left ... white right
    Image.fromarray(grey).save(tmp_path / "map.png")
    schedule = build_schedule(model, alpha="sigma=0s:0.5;0.25s:1.5", alpha_map=f"quality={tmp_path / 'map.png'}")
    assert {k: v.kind for k, v in schedule.axes.items()} == {"sigma": "keys", "quality": "image"}
    dst = tmp_path / "out.mkv"
    process_video(model, clips["lossless"], dst, schedule, codec="ffv1", log=lambda _: None)
    inputs, times = decode(clips["lossless"])
    outputs, _ = decode(dst)
    qmap = torch.from_numpy(grey).float()[None, None] / 255
    for k in (0, 3, N - 1):
        setting = {"sigma": float(np.interp(times[k], [0.0, 0.25], [0.5, 1.5])), "quality": qmap}
        diff = np.abs(outputs[k].astype(int) - expected_frame(model, inputs[k], setting).astype(int)).max()
        assert diff <= 1, f"frame {k} is off by {diff}"
    for options, words in [
        (dict(alpha="0s:0.5;1s:1,0.3"), "name the axis"),
        (dict(alpha="sigma=0s:0.5;1s:2.5"), "outside sigma's range"),
        (dict(alpha="sigma=0s:0.5;1s:1", level="sigma=25"), "set by both"),
        (dict(alpha="bogus=0s:0.5"), "no axis 'bogus'"),
    ]:
        with pytest.raises(ValueError, match=words):
            build_schedule(model, **options)


# -- --resume ------------------------------------------------------------------------------------------


class Counting:
    """apply_model, counting its calls; raises KeyboardInterrupt on call ``stop`` (a simulated Ctrl-C)."""

    def __init__(self, stop: int | None = None) -> None:
        self.calls, self.stop, self.real = 0, stop, apply_module.apply_model

    def __call__(self, *args, **kwargs):  # noqa: ANN002, ANN003, ANN204
        self.calls += 1
        if self.calls == self.stop:
            raise KeyboardInterrupt
        return self.real(*args, **kwargs)


def test_resume_redoes_nothing_finished(model: ftn.TunableModel, clips: dict[str, Path], tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    src = clips["lossless"]
    schedule = build_schedule(model, alpha="0s:0.1,0.5s:0.9")
    options = dict(codec="ffv1", segment_seconds=0.25, log=lambda _: None)  # 6 frames a segment
    reference = tmp_path / "reference.mkv"
    process_video(model, src, reference, schedule, **options)

    dst = tmp_path / "out.mkv"
    counting = Counting(stop=9)  # interrupted in frame 8, in the second segment
    monkeypatch.setattr(apply_module, "apply_model", counting)
    with pytest.raises(KeyboardInterrupt):
        process_video(model, src, dst, schedule, **options)
    assert not dst.exists(), "an interrupted run presented a partial output"
    manifest = json.loads((work_folder(dst) / "manifest.json").read_text())
    assert [s["frames"] for s in manifest["segments"]] == [6]
    assert sorted(p.name for p in work_folder(dst).iterdir()) == ["manifest.json", "segment-00000.mkv"]

    counting = Counting()
    monkeypatch.setattr(apply_module, "apply_model", counting)
    result = process_video(model, src, dst, schedule, resume=True, **options)
    assert counting.calls == 6 and result.segments_reused == 1
    assert [np.array_equal(a, b) for a, b in zip(decode(dst)[0], decode(reference)[0])] == [True] * N
    assert not work_folder(dst).exists()


@pytest.mark.parametrize("change", ["alpha", "model", "truncated segment", "empty segment", "no --resume"])
def test_resume_redoes_what_differs(model: ftn.TunableModel, clips: dict[str, Path], tmp_path: Path,
                                    monkeypatch: pytest.MonkeyPatch, change: str) -> None:
    src, dst = clips["lossless"], tmp_path / "out.mkv"
    options = dict(codec="ffv1", segment_seconds=0.25, log=lambda _: None)
    monkeypatch.setattr(apply_module, "apply_model", Counting(stop=9))
    with pytest.raises(KeyboardInterrupt):
        process_video(model, src, dst, build_schedule(model, alpha=0.3), **options)
    segment = work_folder(dst) / "segment-00000.mkv"
    again, alpha, resume = model, 0.3, True
    if change == "alpha":
        alpha = 0.4
    elif change == "model":
        again = tiny_model(seed=1)
    elif change == "truncated segment":
        segment.write_bytes(segment.read_bytes()[:100])
    elif change == "empty segment":
        segment.write_bytes(b"")
    else:
        resume = False
    counting = Counting()
    monkeypatch.setattr(apply_module, "apply_model", counting)
    process_video(again, src, dst, build_schedule(again, alpha=alpha), resume=resume, **options)
    assert counting.calls == N  # nothing of the earlier run was kept
    assert len(decode(dst)[0]) == N


# -- hostile inputs --------------------------------------------------------------------------------------


def _truncated_mp4(folder: Path) -> Path:
    """An MP4 whose index (moov, written first) declares 12 frames, cut after 60% of its bytes."""
    whole = make_clip(folder / "whole.mp4", codec="libx264", pix_fmt="yuv420p", audio="aac",
                      options={"movflags": "+faststart"})
    path = folder / "truncated.mp4"
    data = whole.read_bytes()
    path.write_bytes(data[: len(data) * 6 // 10])
    return path


def _size_change(folder: Path) -> Path:
    """An MKV stream of Motion JPEG frames: 6 at 64x48, then 6 at 32x24 (each JPEG carries its size)."""
    path = folder / "sizes.mkv"
    out = av.open(str(path), "w")
    stream = out.add_stream("mjpeg", rate=FPS)
    stream.width, stream.height, stream.pix_fmt = W, H, "yuvj420p"
    small = av.CodecContext.create("mjpeg", "w")
    small.width, small.height, small.pix_fmt, small.time_base = W // 2, H // 2, "yuvj420p", Fraction(1, FPS)
    for k in range(N):
        encoder = stream.codec_context if k < 6 else small
        frame = av.VideoFrame.from_ndarray(picture(k, *((W, H) if k < 6 else (W // 2, H // 2))), format="rgb24")
        frame.pts = k
        for packet in encoder.encode(frame):
            packet.stream, packet.pts, packet.dts = stream, k, k
            out.mux(packet)
    out.close()
    return path


def _audio_only(folder: Path) -> Path:
    path = folder / "sound.mkv"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("pcm_s16le", rate=RATE, layout="mono")
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 4800), np.int16), format="s16", layout="mono")
        frame.sample_rate, frame.pts = RATE, 0
        out.mux(stream.encode(frame))
        out.mux(stream.encode())
    return path


HOSTILE = {
    "random bytes": (lambda d: _write(d / "random.mp4", np.random.default_rng(0).bytes(5000)), "not a readable video"),
    "text": (lambda d: _write(d / "notes.mkv", b"not a video at all\n"), "not a readable video"),
    "empty": (lambda d: _write(d / "empty.mp4", b""), "not a readable video"),
    "audio only": (_audio_only, "has no video stream"),
    "lying container": (_truncated_mp4, "declares 12 frames but only"),
    "frames change size": (_size_change, "frame 6 is 32x24 but the video began at 64x48"),
}


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_video_is_refused_in_one_line(model: ftn.TunableModel, tmp_path: Path, case: str) -> None:
    make, words = HOSTILE[case]
    src = make(tmp_path)
    dst = tmp_path / "out.mkv"
    with pytest.raises(VideoError, match=words) as err:
        process_video(model, src, dst, build_schedule(model, alpha=0.5), codec="ffv1", segment_seconds=0.1,
                      log=lambda _: None)
    assert "\n" not in str(err.value)
    assert_no_output(dst)


def test_frames_over_the_pixel_limit_are_refused_before_decoding(model: ftn.TunableModel, clips: dict[str, Path],
                                                                  tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import ftn.infer.video as video

    monkeypatch.setattr(video, "MAX_PIXELS", W * H - 1)  # a real limit is 8192 x 8192: the same check, cheaply
    dst = tmp_path / "out.mkv"
    with pytest.raises(VideoError, match="declares 64x48 frames, over the 3,071-pixel limit"):
        process_video(model, clips["lossless"], dst, build_schedule(model, alpha=0.5), codec="ffv1", log=lambda _: None)
    assert_no_output(dst)


@pytest.mark.parametrize(("options", "words"), [
    (dict(alpha="0s:0.2,1s:1.5"), "must lie in"),
    (dict(alpha="0s:0.2,1s"), "not TIME:VALUE"),
    (dict(level="0s:20,1s:50"), "keyframes over time are given in alpha"),
    (dict(alpha="0.2", level="30"), "exactly one"),
    (dict(alpha_map="missing.mp4"), "alpha map not found"),
])
def test_schedule_refusals(model: ftn.TunableModel, options: dict, words: str) -> None:
    with pytest.raises((ValueError, FileNotFoundError), match=words):
        build_schedule(model, **options)


def test_codec_the_container_cannot_hold_is_refused_before_work(model: ftn.TunableModel, clips: dict[str, Path],
                                                                 tmp_path: Path) -> None:
    dst = tmp_path / "out.webm"
    with pytest.raises(ValueError, match="cannot hold"):
        process_video(model, clips["lossless"], dst, build_schedule(model, alpha=0.5), codec="ffv1", log=lambda _: None)
    assert_no_output(dst)


# -- the command: ftn run on a video ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def model_file(model: ftn.TunableModel, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("model") / "denoise.safetensors"
    ftn.save(model, path, task="denoise", levels=[{"sigma": 20}, {"sigma": 80}],
             calibration={"level_name": "sigma", "levels": [20, 50, 80], "alphas": [0.0, 0.4, 1.0]})
    return path


def ftn_run(*argv: str) -> int:
    from ftn.cli import main

    return main(["run", *map(str, argv)])


def test_cli_runs_a_video_with_keyframes(model: ftn.TunableModel, model_file: Path, clips: dict[str, Path], tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    dst = tmp_path / "out.mkv"
    assert ftn_run("-i", clips["lossless"], "-o", dst, "--model", model_file, "--alpha", "0s:0.2,0.25s:0.8",
                   "--codec", "ffv1", "--tile", "0") == 0
    out = capsys.readouterr().out
    assert "12 frames 64x48 at 24 fps" in out and "pcm_s16le copied" in out
    inputs, times = decode(clips["lossless"])
    outputs, _ = decode(dst)
    k = N - 1
    alpha = float(np.interp(times[k], [0.0, 0.25], [0.2, 0.8]))
    assert np.abs(outputs[k].astype(int) - expected_frame(model, inputs[k], alpha).astype(int)).max() <= 1


def test_cli_interrupted_then_resumed(model_file: Path, clips: dict[str, Path], tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    dst = tmp_path / "out.mp4"
    argv = ["-i", clips["mp4"], "-o", dst, "--model", model_file, "--level", "50", "--segment-seconds", "0.25"]
    monkeypatch.setattr(apply_module, "apply_model", Counting(stop=9))
    assert ftn_run(*argv) == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--resume" in err[0] and not dst.exists()
    counting = Counting()
    monkeypatch.setattr(apply_module, "apply_model", counting)
    assert ftn_run(*argv, "--resume") == 0
    assert counting.calls == 6 and "1 of 2 segments from an earlier run" in capsys.readouterr().out
    assert len(decode(dst)[0]) == N


@pytest.mark.parametrize("case", sorted(HOSTILE) + ["auto", "codec for an image", "bad crf", "bad segment", "png suffix",
                                  "unknown codec"])
def test_cli_refusals_are_one_line(model_file: Path, clips: dict[str, Path], tmp_path: Path, case: str,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    src, dst, extra = clips["lossless"], tmp_path / "out.mkv", ["--alpha", "0.5"]
    if case in HOSTILE:
        src = HOSTILE[case][0](tmp_path)
    elif case == "auto":
        extra = ["--auto"]
    elif case == "codec for an image":
        from PIL import Image

        src, dst = tmp_path / "photo.png", tmp_path / "out.png"
        Image.fromarray(picture(0)).save(src)
        extra += ["--codec", "ffv1"]
    elif case == "bad crf":
        extra += ["--crf", "x"]
    elif case == "bad segment":
        extra += ["--segment-seconds", "0"]
    elif case == "unknown codec":
        extra += ["--codec", "divx"]
    else:
        dst = tmp_path / "out.png"
    assert ftn_run("-i", src, "-o", dst, "--model", model_file, *extra) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("ftn run: error: "), err
    assert_no_output(dst)
