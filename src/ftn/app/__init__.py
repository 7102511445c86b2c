"""``ftn app``: a small web app to pick a model's level with a slider, globally or per pixel.

A model with several axes (``sigma`` x ``quality``) or more than two anchors gets a slider per axis,
labelled by its anchor levels, and a paint editor per axis.

Install with ``pip install -e .[app]`` and start with ``ftn app`` (http://127.0.0.1:7860). The
modules split what the controls mean from the web code, so the rules are testable without a browser:

* :mod:`ftn.app.controls` -- level labels for the slider's ends; painted mask / gradient -> alpha map;
  per-axis labels and settings (:func:`~ftn.app.controls.axes_setting`)
* :mod:`ftn.app.uploads` -- refusing uploads over the byte and megapixel limits
* :mod:`ftn.app.engine` -- the model cache, the blind "auto" level, running and saving
* :mod:`ftn.app.ui` -- the Gradio page and its event handlers (the only module that imports Gradio)
* :mod:`ftn.app.config` -- the settings (:class:`AppConfig`, :func:`app_config` from ``ftn app``'s options)
* :mod:`ftn.app.cleanup` -- removing the app's temporary folders at exit and on SIGTERM
* :mod:`ftn.app.server` -- :func:`launch`

Importing this package does not import Gradio; :func:`launch` does.
"""

from .config import AppConfig, app_config
from .server import launch
from .uploads import UploadLimits

__all__ = ["AppConfig", "UploadLimits", "app_config", "launch"]
