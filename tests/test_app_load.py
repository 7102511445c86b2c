"""The web app under load, reduced: the real ``ftn app`` server in a subprocess (127.0.0.1, a free
port) and 5 concurrent clients sending every kind of request of ``benchmarks/app_load.py`` (runs,
uploads at and over the limits, paint layers, inline images, model files). Every request must be
answered or refused in one line, the server must log no traceback, stay under the memory bound and
settle near its baseline. The full run (20 clients) writes ``docs/reliability.md``.

Also the request guards the load test led to (:func:`ftn.app.uploads.check_inline`,
:class:`ftn.app.server.BodyLimit`), case by case, without a server.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("gradio", reason="the web app is an optional extra: pip install -e .[app]")

from benchmarks.app_load import KINDS, LoadSettings, header_only_png, padded_png, run_load, schedule, zero_png
from ftn.app.uploads import UploadLimits, UploadRejected, check_inline

LIMITS = UploadLimits(max_megapixels=0.01, max_bytes=200_000)  # 100 x 100 pixels, 200 kB


def _png(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.full((height, width, 3), 128, np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def _url(data: bytes, head: str = "data:image/png;base64") -> str:
    return f"{head},{base64.b64encode(data).decode()}"


@pytest.mark.parametrize(
    "url,refusal",
    [
        (_url(_png(100, 100)), None),  # exactly at the megapixel limit
        (_url(padded_png(_png(10, 10), 200_000)), None),  # exactly at the byte limit
        (_url(padded_png(_png(10, 10), 200_001)), "200001 bytes; this app accepts files up to 200000 bytes"),
        (_url(_png(101, 100)), "101 x 100 = 0.0101 megapixels; this app accepts up to 0.01 megapixels"),
        (_url(zero_png(13000, 13000)), "13000 x 13000"),  # a real bomb: 169 MB of pixels in 164 kB
        (_url(header_only_png(20000, 20000)), "far too many pixels"),  # over Pillow's own limit
        (_url(b"hello"), "not an image this app can read"),
        (_url(_png(8, 8), "data:image/png"), "must be a base64 data: URL"),
        ("data:image/png;base64,@@@", "not an image"),  # base64 junk decodes to junk
        ("data:nothing", "must be a base64 data: URL"),
    ],
)
def test_inline_images_meet_the_upload_limits_before_decoding(url: str, refusal: str | None) -> None:
    if refusal is None:
        width, height = check_inline(url, LIMITS)
        assert width * height <= LIMITS.max_pixels
        return
    with pytest.raises(UploadRejected, match=refusal) as info:
        check_inline(url, LIMITS)
    assert "\n" not in str(info.value)


def _through_limit(body: bytes, *, path: str = "/gradio_api/call/on_run", declare: bool = True,
                   chunk: int = 1 << 16) -> tuple[int, bytes, int]:
    """A request through :class:`BodyLimit` (limit 1000 bytes) to an app that reads the whole body
    and answers 200; (status, reply body, bytes the app read)."""
    from ftn.app.server import BodyLimit

    read = []

    async def app(scope, receive, send) -> None:  # noqa: ANN001
        total = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise ConnectionError("client gone")
            total += len(message.get("body", b""))
            if not message.get("more_body"):
                break
        read.append(total)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    parts = [body[i:i + chunk] for i in range(0, len(body), chunk)] or [b""]
    messages = [{"type": "http.request", "body": p, "more_body": i < len(parts) - 1} for i, p in enumerate(parts)]
    sent = []

    async def receive():  # noqa: ANN202
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message) -> None:  # noqa: ANN001
        sent.append(message)

    headers = [(b"content-length", str(len(body)).encode())] if declare else []
    asyncio.run(BodyLimit(app, max_bytes=1000)({"type": "http", "path": path, "headers": headers}, receive, send))
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    reply = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return status, reply, (read or [0])[0]


@pytest.mark.parametrize(
    "size,declare,path,status",
    [
        (1000, True, "/gradio_api/call/on_run", 200),  # at the limit
        (1001, True, "/gradio_api/call/on_run", 413),  # refused by its Content-Length, unread
        (1001, False, "/gradio_api/call/on_run", 413),  # no Content-Length: refused as it arrives
        (5000, False, "/gradio_api/queue/join", 413),
        (5000, True, "/gradio_api/upload", 200),  # uploads: Gradio streams them and checks their size
    ],
)
def test_request_bodies_over_the_limit_are_refused_in_one_line(size: int, declare: bool, path: str, status: int) -> None:
    got, reply, read = _through_limit(bytes(size), path=path, declare=declare, chunk=300)
    assert got == status
    if status == 413:
        detail = json.loads(reply)["detail"]
        assert detail.startswith("this request is over 1000 bytes") and "\n" not in detail
        assert read == 0  # the app never saw the whole body
    else:
        assert reply == b"ok" and read == size


#: The reduced load test: small images and limits, so each run takes a fraction of a second.
REDUCED = LoadSettings(clients=5, requests=5, side=64, max_megapixels=0.05, max_upload_mb=0.25, local_models=4,
                       time_limit=150.0, call_timeout=120.0, settle=5.0, bound_mb=1500.0, margin_mb=150.0)


def test_the_reduced_mix_sends_every_kind_of_request() -> None:
    sent = {kind.name for requests in schedule(REDUCED) for kind in requests}
    assert sent == {kind.name for kind in KINDS}


@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="reads the server's memory from /proc (Linux)")
@pytest.mark.skipif(sys.platform != "linux", reason="reads the server's memory from /proc (Linux)")
def test_the_app_under_load_answers_or_refuses_everything_and_its_memory_settles() -> None:
    result = run_load(REDUCED, log=lambda line: None)
    sent = [o for o in result.outcomes if o.got != "not sent"]
    assert len(sent) == REDUCED.clients * REDUCED.requests, "some requests were not sent within the time limit"
    assert not [o for o in sent if o.got == "error"], [o.message for o in sent if o.got == "error"]
    assert not result.unexpected, [(o.kind, o.got, o.message) for o in result.unexpected]
    assert all(o.message.strip() and o.lines == 1 for o in sent if o.got == "refused")
    assert not result.tracebacks, result.tracebacks
    assert not result.inconsistent
    assert result.peak_mb < REDUCED.bound_mb
    assert result.settled_mb <= result.baseline_mb + REDUCED.margin_mb
    assert not result.leftover_folders
    assert result.problems == []
