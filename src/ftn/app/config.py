"""The web app's settings, apart from :mod:`ftn.app.server` so that the page (:mod:`ftn.app.ui`) and
the server both read them without importing each other."""

from __future__ import annotations

import ipaddress
import math
from dataclasses import dataclass, field

from .uploads import UploadLimits

__all__ = ["AppConfig", "app_config", "is_loopback"]

#: The largest upload size ``--max-upload-mb`` may set: far above any photo, and a finite number.
MAX_UPLOAD_MB = 100_000.0


def is_loopback(host: str) -> bool:
    """Whether ``host`` is reachable from this machine only (``localhost``, 127.0.0.0/8, ``::1``)."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip().strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class AppConfig:
    """Where the app listens and what it accepts."""

    host: str = "127.0.0.1"
    """Interface to bind; the default keeps the app private to this machine."""
    port: int = 7860
    limits: UploadLimits = field(default_factory=UploadLimits)
    default_model: str = "denoise"
    """The model selected when the page opens (a shipped name)."""
    allow_local_models: bool = False
    """Offer the box that loads a model file from the server's disk by path. Off by default: anyone
    who reaches the page could make the server read any ``.safetensors`` file it can see
    (``ftn app --allow-local-models``)."""
    max_models: int = 3
    """Models kept loaded at once (least recently used ones are dropped)."""

    def __post_init__(self) -> None:
        if not isinstance(self.host, str) or not self.host.strip() or len(self.host) > 255:
            raise ValueError("--host must be a host name or address, e.g. 127.0.0.1")
        if isinstance(self.port, bool) or not isinstance(self.port, int) or not 1 <= self.port <= 65535:
            raise ValueError(f"--port must be a port number from 1 to 65535, got {str(self.port)[:20]}")
        if isinstance(self.max_models, bool) or not isinstance(self.max_models, int) or self.max_models < 1:
            raise ValueError(f"max_models must be a positive int, got {str(self.max_models)[:20]}")


def app_config(
    *,
    host: str = "127.0.0.1",
    port: int = 7860,
    max_megapixels: float = 16.0,
    max_upload_mb: float = 50.0,
    allow_local_models: bool = False,
) -> AppConfig:
    """The settings from ``ftn app``'s options, each checked (``ftn.cli`` calls this).

    Raises:
        ValueError: a one-line message naming the option (an infinite or negative size, a port
            outside 1..65535, ...).
    """
    for option, value in (("--max-megapixels", max_megapixels), ("--max-upload-mb", max_upload_mb)):
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
            raise ValueError(f"{option} must be a positive, finite number, got {str(value)[:20]}")
    if max_upload_mb > MAX_UPLOAD_MB:
        raise ValueError(f"--max-upload-mb must be at most {MAX_UPLOAD_MB:g}, got {max_upload_mb:g}")
    limits = UploadLimits(max_megapixels=float(max_megapixels), max_bytes=int(max_upload_mb * 1024 * 1024))
    return AppConfig(host=host, port=port, limits=limits, allow_local_models=bool(allow_local_models))
