"""``ftn info``: a model file's metadata, bounded, with a multi-axis model's axes in words first."""

from __future__ import annotations

import argparse

__all__ = ["add_parser", "describe_axes"]


def _cmd_info(args: argparse.Namespace) -> int:
    from .axes_io import STRUCTURE_KEY
    from .io import describe_metadata, read_metadata
    from .models import resolve

    meta = read_metadata(resolve(args.model))
    if STRUCTURE_KEY in meta and not args.json:
        for line in describe_axes(meta):
            print(line)
        print("metadata:")
    print(describe_metadata(meta))  # bounded: a crafted file cannot make it print without end
    return 0


def describe_axes(meta: dict) -> list[str]:
    """A multi-axis model file's axes in words, one line each: anchors, levels, calibration, chaining; corners.

    Raises:
        ValueError: the file's levels or structure do not validate (one line).
    """
    from .levels import Levels

    levels = Levels.from_metadata(meta)
    known = {a.name: a for a in levels.axes}
    structure = meta.get("multi_axis") or {}
    try:
        axes = [(str(a["name"]), int(a["anchors"]), bool(a.get("chained", False))) for a in structure["axes"]]
        corners = [dict(c) for c in structure.get("corners", [])]
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f"the file's 'multi_axis' metadata is malformed ({err})") from None
    options = ", ".join(f"{k} {v}" for k, v in (meta.get("method_options") or {}).items())
    lines = [f"multi-axis model: task {meta.get('task', '?')}, method {meta.get('method')} ({options}), "
             f"{len(axes)} axes, on {meta.get('arch')}"]
    for name, count, chained in axes:
        axis = known.get(name)
        how = "chained (each anchor from the previous)" if chained else "from the base"
        if axis is None or axis.anchors is None:
            lines.append(f"  {name}: {count} anchors, alpha 0 ... {count - 1}, {how}; anchor levels not named")
            continue
        anchors = ", ".join(f"{k} = {name} {v:g}" for k, v in enumerate(axis.anchors))
        cal = axis.calibration
        calibration = (f"calibrated on {len(cal.levels)} levels {name} {cal.levels[0]:g} ... {cal.levels[-1]:g}"
                       + (f" ({cal.source})" if cal.source else "")) if cal is not None else \
            "no calibration (a level between anchors: linear between them)"
        lines.append(f"  {name}: {count} anchors (alpha {anchors}), {how}; {calibration}")
    corner_words = "; ".join(",".join(f"{k}={v}" for k, v in c.items()) for c in corners) or "none"
    lines.append(f"  corners (joint corrections): {corner_words}")
    return lines



def add_parser(sub: argparse._SubParsersAction) -> None:
    """Add ``ftn info`` to the ``ftn`` command's subparsers."""
    info = sub.add_parser("info", help="print a model file's metadata (a multi-axis model's axes in words first)")
    info.add_argument("model", help="a .safetensors model file or a shipped model's name (e.g. sr-pd-x4)")
    info.add_argument("--json", action="store_true", help="the metadata as JSON only")
    info.set_defaults(func=_cmd_info)
