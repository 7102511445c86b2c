"""The web app's settings, apart from :mod:`ftn.app.server` so that the page (:mod:`ftn.app.ui`) and
the server both read them without importing each other."""

from __future__ import annotations

from dataclasses import dataclass, field

from .uploads import UploadLimits

__all__ = ["AppConfig"]


@dataclass(frozen=True)
class AppConfig:
    """Where the app listens and what it accepts."""

    host: str = "127.0.0.1"
    """Interface to bind; the default keeps the app private to this machine."""
    port: int = 7860
    limits: UploadLimits = field(default_factory=UploadLimits)
    default_model: str = "denoise"
    """The model selected when the page opens (a shipped name)."""
