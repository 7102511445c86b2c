"""A quick look (session 10, issue [2/6]): the three-anchor ``denoise`` (sigma 20 -> 50 -> 80), uncalibrated,
alpha linear between the anchors, beside CBM3D and FFDNet as ``benchmarks/quality.py`` compares the shipped model.

    python reproduce/runs/ship/denoise/anchors3/quick_peers.py     # from the repository root; about 5 minutes
"""

import importlib.util
import json
import sys
from pathlib import Path

sys.path.insert(0, ".")

import ftn  # noqa: E402
from benchmarks.quality import peers, peers_markdown  # noqa: E402
from ftn.axes_io import save_axes  # noqa: E402
from ftn.levels import Calibration  # noqa: E402

spec = importlib.util.spec_from_file_location("ship_denoise_anchors", "scripts/ship_denoise_anchors.py")
script = importlib.util.module_from_spec(spec)
sys.modules["ship_denoise_anchors"] = script
spec.loader.exec_module(script)

inner = ftn.load("reproduce/runs/ship/denoise/ftn16-s50/model.safetensors").eval()
outer = ftn.load("reproduce/runs/ship/denoise/ftn16/model.safetensors").eval()  # the two-anchor model shipped in session 10
model = script.assemble(inner, outer)
model.metadata = {k: v for k, v in inner.metadata.items() if k not in ("calibration", "quality")}
linear = Calibration((20.0, 50.0, 80.0), (0.0, 1.0, 2.0), "anchors, linear between (not measured)")
model.metadata = model.levels.with_calibration(linear, "sigma").replace_in(model.metadata)
candidate = Path("/tmp/denoise-anchors3-linear.safetensors")
save_axes(model, candidate)
result = peers(str(candidate), 10)
print("\n".join(peers_markdown(result)))
Path(__file__).with_name("peers-uncalibrated.json").write_text(json.dumps(result, indent=1) + "\n")
