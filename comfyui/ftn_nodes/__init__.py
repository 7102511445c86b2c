"""ftn's ComfyUI nodes: FTN Load Model, FTN Apply, FTN Export Plain Model (category "ftn").

Install: link (or copy) this folder into ComfyUI's ``custom_nodes`` and make ftn importable by
ComfyUI's Python (``comfyui/README.md``). The nodes themselves live in the package, in
:mod:`ftn.integrations.comfyui`; this file only hands ComfyUI their mappings.
"""

import importlib.util
import sys
from pathlib import Path

if importlib.util.find_spec("ftn") is None:
    # Not installed in ComfyUI's Python: a linked checkout still works, from its own src/ folder.
    _src = Path(__file__).resolve().parents[2] / "src"
    if not (_src / "ftn" / "__init__.py").is_file():
        raise ImportError("ftn is not installed in ComfyUI's Python: pip install --no-deps -e /path/to/ftn "
                          "(its other dependencies are ComfyUI's too), or link this folder from an ftn checkout")
    sys.path.append(str(_src))

from ftn.integrations.comfyui import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS  # noqa: E402

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]
