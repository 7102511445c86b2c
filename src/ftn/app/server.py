"""Starting the web app: :func:`launch`. Gradio is imported only when it starts.

Besides serving the page, the server bounds what a request may make it do before any handler runs
(found by ``benchmarks/app_load.py``, a load test with hostile requests among ordinary ones):

* a request body other than a file upload is at most :data:`MAX_REQUEST_BYTES` (:class:`BodyLimit`);
  file uploads are streamed to disk by Gradio and held to ``--max-upload-mb`` there;
* images sent inline (``data:`` URLs) meet the upload limits before Gradio decodes them
  (:func:`ftn.app.uploads.check_inline`);
* a request whose inputs Gradio cannot read (a malformed value, an out-of-range slider, an image
  Pillow refuses to open) is refused in one line, without a traceback in the server's log;
* memory freed after requests goes back to the system (:func:`release_memory_every`).
"""

from __future__ import annotations

import ctypes
import gc
import inspect
import json
import os
import sys
import threading
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from .config import AppConfig, is_loopback
from .uploads import UploadLimits, UploadRejected, check_inline

__all__ = ["MAX_REQUEST_BYTES", "BodyLimit", "guard_inputs", "launch", "release_memory_every"]

#: The largest request body other than a file upload. The page sends files through Gradio's upload
#: route and small JSON (paths, slider values) otherwise; without a cap, 20 requests of 60 MB each
#: of JSON would hold gigabytes while Gradio parses them.
MAX_REQUEST_BYTES = 4 * 1024 * 1024

_Scope = MutableMapping[str, Any]
_Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
_Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


class BodyLimit:
    """ASGI middleware: refuse (HTTP 413, a one-line ``detail``) a request whose body is over
    ``max_bytes``, by its ``Content-Length`` or, when it has none, as the body arrives. Paths that
    end in ``/upload`` pass: Gradio streams file uploads to disk and checks their size itself."""

    def __init__(self, app: Callable[[_Scope, _Receive, _Send], Awaitable[None]], max_bytes: int = MAX_REQUEST_BYTES) -> None:
        self.app, self.max_bytes = app, int(max_bytes)

    async def __call__(self, scope: _Scope, receive: _Receive, send: _Send) -> None:
        if scope.get("type") != "http" or str(scope.get("path", "")).endswith("/upload"):
            await self.app(scope, receive, send)
            return
        declared = next((v for k, v in scope.get("headers", ()) if k.lower() == b"content-length"), b"")
        if declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(send, int(declared))
            return
        seen, over, started = 0, False, False

        async def counted() -> MutableMapping[str, Any]:
            nonlocal seen, over
            message = await receive()
            if message.get("type") == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    over = True
                    return {"type": "http.disconnect"}  # the app stops reading; the reply is ours
            return message

        async def guarded(message: MutableMapping[str, Any]) -> None:
            nonlocal started
            if over and not started:
                return
            started = started or message.get("type") == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, guarded)
        except Exception:
            if not over:
                raise
        if over and not started:
            await self._refuse(send, seen)

    async def _refuse(self, send: _Send, size: int) -> None:
        detail = (f"this request is over {_size(self.max_bytes)} ({_size(size)} sent); the app takes images as file "
                  "uploads, and other requests are small")
        body = json.dumps({"detail": detail}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


def _size(n: int) -> str:
    return f"{n / 2**20:.1f} MB" if n >= 2**20 else f"{n} bytes"


def _inline_images(value: Any, depth: int = 0) -> list[str]:
    """The ``data:`` URLs of file values (``{"url": "data:..."}``) in a request's input, however nested."""
    if depth > 8:  # the page's values nest two levels deep; deeper is not one of its requests
        return []
    if isinstance(value, dict):
        url = value.get("url")
        found = [url] if isinstance(url, str) and url[:5].lower() == "data:" else []
        return found + [u for v in value.values() if isinstance(v, (dict, list)) for u in _inline_images(v, depth + 1)]
    if isinstance(value, list):
        return [u for v in value if isinstance(v, (dict, list)) for u in _inline_images(v, depth + 1)]
    return []


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return f"{type(err).__name__}: {text[:240]}{'...' if len(text) > 240 else ''}"


def guard_inputs(app: Any, limits: UploadLimits) -> None:
    """Make the Gradio ``app`` check a request's inputs before processing them, and refuse those it
    cannot process in one line (see the module docstring). Wraps ``app.preprocess_data``, the one
    step every event's inputs pass through."""
    import gradio as gr
    from gradio.exceptions import ComponentProcessingError
    from pydantic import ValidationError

    original = app.preprocess_data

    async def preprocess_data(block_fn: Any, inputs: list[Any], *args: Any, **kwargs: Any) -> Any:
        try:
            for url in _inline_images(inputs):
                check_inline(url, limits)
            return await original(block_fn, inputs, *args, **kwargs)
        except UploadRejected as err:
            raise gr.Error(str(err), print_exception=False) from None
        except gr.Error as err:
            if not err.print_exception:
                raise
            # Gradio's own checks (a slider's range, ...): the sender's mistake, not the server's
            raise gr.Error(" ".join(str(err.message).split())[:300], print_exception=False) from None
        except (ComponentProcessingError, ValidationError) as err:
            cause = err.__cause__ if isinstance(err, ComponentProcessingError) and err.__cause__ is not None else err
            line = _one_line(cause)
            print(f"ftn app: refused a request: {line}", file=sys.stderr)
            raise gr.Error(f"this request's input could not be read ({line})", print_exception=False) from None

    app.preprocess_data = preprocess_data


def release_memory_every(seconds: float = 15.0) -> threading.Thread | None:
    """Hand memory the server no longer uses back to the system every ``seconds``, in a daemon thread.

    The load test found the server 267 MB above its baseline 30 s after the clients stopped: large
    arrays of refused requests wait in reference cycles (their tracebacks) for Python's collector,
    and glibc keeps what Python and torch free in its heaps. ``gc.collect`` and glibc's
    ``malloc_trim`` (not on other C libraries: then only the collector runs) take a few ms.
    """
    try:
        trim = ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):
        trim = None

    def loop() -> None:
        while True:
            time.sleep(seconds)
            gc.collect()
            if trim is not None:
                trim(0)

    thread = threading.Thread(target=loop, name="ftn-app-release-memory", daemon=True)
    thread.start()
    return thread


def launch(config: AppConfig, *, block: bool = True) -> Any:
    """Build the app and serve it on ``config.host:config.port``; returns the Gradio Blocks.

    With ``block=True`` this returns only when the server stops (Ctrl-C); with ``block=False`` the
    server runs in a background thread (tests, scripts) until ``app.close()``.

    Raises:
        ModuleNotFoundError: Gradio is not installed (``pip install -e .[app]``).
        OSError: the port is taken.
    """
    # Gradio phones home for analytics and version checks unless told not to; this app runs offline.
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    from starlette.middleware import Middleware

    from .ui import CSS, build_app

    if config.allow_local_models and not is_loopback(config.host):
        print(f"ftn app: note: --allow-local-models on {config.host}: anyone who reaches the page can make this "
              "server read any .safetensors file it can see", file=sys.stderr)
    app = build_app(config)
    guard_inputs(app, config.limits)
    release_memory_every()
    # One model run at a time: the CPU has few cores, and runs of one cached model would otherwise
    # race on its alpha setting.
    app.queue(default_concurrency_limit=1)
    # Gradio checks that it can reach itself with one 3-second request and, when that times out,
    # refuses to start (asking for share=True): on a busy machine `ftn app` exited although its
    # server was up (found by the load test). The app is local (share=False), so the check is skipped.
    patience = {"_frontend": False} if "_frontend" in inspect.signature(app.launch).parameters else {}
    app.launch(
        server_name=config.host,
        server_port=config.port,
        max_file_size=config.limits.max_bytes,  # the server refuses bigger uploads before storing them
        prevent_thread_lock=not block,
        share=False,
        inbrowser=False,
        show_error=True,
        ssr_mode=False,
        css=CSS,
        quiet=not block,
        app_kwargs={"middleware": [Middleware(BodyLimit, max_bytes=MAX_REQUEST_BYTES)]},
        **patience,
    )
    return app
