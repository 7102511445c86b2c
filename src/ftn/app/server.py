"""Starting the web app: :func:`launch`. Gradio is imported only when it starts."""

from __future__ import annotations

import os
import sys
from typing import Any

from .config import AppConfig, is_loopback

__all__ = ["launch"]


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
    from .ui import CSS, build_app

    if config.allow_local_models and not is_loopback(config.host):
        print(f"ftn app: note: --allow-local-models on {config.host}: anyone who reaches the page can make this "
              "server read any .safetensors file it can see", file=sys.stderr)
    app = build_app(config)
    # One model run at a time: the CPU has few cores, and runs of one cached model would otherwise
    # race on its alpha setting.
    app.queue(default_concurrency_limit=1)
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
    )
    return app
