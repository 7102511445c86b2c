"""Parameters and MACs of a base network with each method attached: the paper's Table 4, computed.

MACs are counted by ``torch.utils.flop_counter.FlopCounterMode`` on a real forward (convolutions and
matrix products; FLOPs / 2), never typed in. The paper's Table 4 reports "GFLOPs" whose values are
multiply-accumulates of the convolutions (AdaFM-Net at 256 x 256: 25.11), so we compare MACs with them.

For FTN two costs are given: computing FTN(f) in every forward (what the paper counts) and the fast
path, where the blended kernels are computed once per alpha and each image costs the plain network.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode

from ..archs import build_arch
from ..methods import attach

__all__ = ["ComplexityRow", "PAPER_TABLE4", "count_parameters", "count_macs", "aten_ops", "table4", "format_table"]

# Paper, Table 4: (GFLOPs, printed overhead in %, params in M) per row, for AdaFM-Net denoising
# (256 x 256 input) and CFSNet-30 x2 super-resolution (256 x 256 input). The printed overheads of the
# FTN rows (0.10%, 0.01%) do not follow from the printed GFLOPs (1.00%, 0.08%); both are shown.
PAPER_TABLE4: dict[str, dict[str, tuple[float, float, float]]] = {
    "adafm_net": {
        "baseline": (25.11, 0.0, 1.41),
        "+cfsnet": (46.96, 87.02, 3.06),
        "+adafm": (26.01, 3.58, 1.46),
        "+ftn": (25.36, 0.10, 1.83),
        "+ftn(G=16)": (25.13, 0.01, 1.44),
    },
    "cfsnet": {
        "baseline": (155.96, 0.0, 2.37),
        "+cfsnet": (311.36, 99.64, 4.93),
        "+adafm": (162.50, 4.20, 2.47),
        "+ftn": (156.34, 0.02, 3.01),
        "+ftn(G=16)": (156.00, 0.00, 2.41),
    },
}


@dataclass
class ComplexityRow:
    name: str
    placement: str
    params: int
    macs: int  # per image, tuner cost included as the paper counts it
    fast_macs: int  # per image on the fixed-alpha fast path (cached kernels)
    paper_gflops: float | None
    paper_overhead: float | None  # as printed in the paper, %
    paper_params_m: float | None


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@torch.no_grad()
def count_macs(model: nn.Module, x: torch.Tensor) -> int:
    """Multiply-accumulates of one forward on ``x`` (convolutions and matmuls)."""
    # The counter's module tracker hooks autograd; frozen parameters keep it out of the way.
    flags = [(p, p.requires_grad) for p in model.parameters()]
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        with FlopCounterMode(display=False) as counter:
            model(x)
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
    return counter.get_total_flops() // 2


def aten_ops(run: Any, x: torch.Tensor) -> list[tuple[str, tuple[tuple[int, ...], ...]]]:
    """The ATen operators one call ``run(x)`` executes, each with the shapes of its tensor arguments.

    Two models whose lists are equal do the same work, operator for operator: the exact form of "a
    tunable model at a fixed alpha costs what the plain network costs", where timings on a shared
    machine can only say it within their noise. Call ``run`` once before (caches filled).
    """
    from torch.utils._python_dispatch import TorchDispatchMode

    ops: list[tuple[str, tuple[tuple[int, ...], ...]]] = []

    class Recorder(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[override]
            shapes = tuple(tuple(a.shape) for a in args if isinstance(a, torch.Tensor))
            ops.append((str(func.overloadpacket.__name__), shapes))
            return func(*args, **(kwargs or {}))

    with torch.inference_mode(), Recorder():
        run(x)
    return ops


def _clear_caches(model: nn.Module) -> None:
    for m in model.modules():
        cache = getattr(m, "_cache", None)
        if cache is not None and hasattr(cache, "clear"):
            cache.clear()


def _measure(model: nn.Module, x: torch.Tensor) -> tuple[int, int]:
    """(MACs with tuner work in the forward, MACs on the cached fast path)."""
    _clear_caches(model)
    first = count_macs(model, x)
    second = count_macs(model, x)
    return first, second


def table4(
    arch: str = "adafm_net", size: int = 256, arch_options: dict[str, Any] | None = None, *, macs: bool = True
) -> list[ComplexityRow]:
    """Table 4 for ``arch`` on a ``size`` x ``size`` RGB input.

    ``arch="cfsnet"`` defaults to the paper's SR setting (30 blocks, x2). Placements follow the paper:
    FTN and AdaFM on every conv except the last (AdaFM with 5 x 5 filters inside the residual blocks,
    as AdaFM-Net does), CFSNet with one tuning block per residual block.
    """
    options = dict(arch_options or {})
    if arch == "cfsnet":
        options = {"blocks": 30, "scale": 2, **options}
    base = build_arch(arch, **options).eval()
    x = torch.rand(1, 3, size, size)
    conv_names = [n for n, m in base.named_modules() if isinstance(m, nn.Conv2d)]
    last_conv = conv_names[-1]
    inside_blocks = rf"(?:{base.block_pattern})\..*"
    variants: list[tuple[str, str, str | None, dict[str, Any]]] = [  # name, placement, method, options
        ("baseline", "-", None, {}),
        ("+cfsnet", "a tuning block per residual block", "cfsnet", {}),
        ("+adafm", "5x5 depth-wise after each conv in the residual blocks", "adafm", {"kernel_size": 5, "targets": inside_blocks}),
        ("+ftn", "every conv but the last, G=1", "ftn", {"groups": 1, "exclude": [last_conv]}),
        ("+ftn(G=16)", "every conv but the last, G=16", "ftn", {"groups": 16, "exclude": [last_conv]}),
    ]
    paper = PAPER_TABLE4.get(arch, {})
    rows = []
    for name, placement, method, method_options in variants:
        model: nn.Module = copy.deepcopy(base)
        if method is not None:
            model = attach(model, method, **method_options).eval()
            # alpha strictly inside (0, 1) so every branch runs, as at any intermediate level.
            model.set_alpha(0.5)
        total, fast = _measure(model, x) if macs else (0, 0)
        gflops, printed, params_m = paper.get(name, (None, None, None))
        rows.append(ComplexityRow(name, placement, count_parameters(model), total, fast, gflops, printed, params_m))
    return rows


def format_table(rows: list[ComplexityRow], *, markdown: bool = False) -> str:
    """Our figures beside the paper's, with the relative overhead over the baseline."""
    base = rows[0]
    header = ["row", "params (M)", "paper params (M)", "GMACs", "overhead", "paper GFLOPs",
              "paper overhead (printed)", "GMACs, fast path", "placement"]
    lines = []
    for r in rows:
        lines.append(
            [
                r.name,
                f"{r.params / 1e6:.3f}",
                _opt(r.paper_params_m, "{:.2f}"),
                f"{r.macs / 1e9:.2f}",
                f"{100.0 * (r.macs - base.macs) / base.macs:.2f}%" if base.macs else "-",
                _opt(r.paper_gflops, "{:.2f}"),
                _opt(r.paper_overhead, "{:.2f}%"),
                f"{r.fast_macs / 1e9:.2f} ({100.0 * (r.fast_macs - base.macs) / base.macs:+.2f}%)" if base.macs else "-",
                r.placement,
            ]
        )
    if markdown:
        out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        out += ["| " + " | ".join(line) + " |" for line in lines]
        return "\n".join(out)
    widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(header)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return "\n".join([fmt.format(*header), fmt.format(*("-" * w for w in widths))] + [fmt.format(*line) for line in lines])


def _opt(value: float | None, fmt: str) -> str:
    return fmt.format(value) if value is not None else "-"
