"""Removing the app's temporary folders when it stops: at a normal exit and on SIGTERM.

``atexit`` handlers do not run when a process dies of SIGTERM (what ``kill``, ``systemd`` and
``docker stop`` send), so the result folders ``/tmp/ftn-app-*`` stayed behind. A SIGTERM handler
removes them, then lets the signal do what it did before (the previous handler, or the default:
the process ends with the signal's status).
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import threading
from pathlib import Path
from types import FrameType
from typing import Any

__all__ = ["remove_at_exit"]

_FOLDERS: list[Path] = []
_LOCK = threading.RLock()  # re-entrant: the SIGTERM handler may run while the main thread holds it
_previous: Any = None
_at_exit = False
_on_signal = False


def _remove_all() -> None:
    with _LOCK:
        folders = list(_FOLDERS)
        _FOLDERS.clear()
    for folder in folders:
        shutil.rmtree(folder, ignore_errors=True)


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    _remove_all()
    previous = _previous
    if callable(previous):
        previous(signum, frame)
        return
    # default (or ignored before us: then keep ignoring it)
    if previous == signal.SIG_IGN:
        return
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


def remove_at_exit(folder: str | os.PathLike) -> None:
    """Delete ``folder`` (recursively) when the process exits normally or receives SIGTERM.

    The SIGTERM handler is installed once, from the main thread only (Python allows no other);
    elsewhere the folder is still removed at a normal exit.
    """
    global _previous, _at_exit, _on_signal
    with _LOCK:
        _FOLDERS.append(Path(folder))
        if not _at_exit:
            atexit.register(_remove_all)
            _at_exit = True
        if not _on_signal and threading.current_thread() is threading.main_thread():
            _previous = signal.getsignal(signal.SIGTERM)
            signal.signal(signal.SIGTERM, _on_sigterm)
            _on_signal = True
