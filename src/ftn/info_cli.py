"""``ftn info``: a model file's metadata, bounded, with a multi-axis model's axes in words first.

``ftn info --card MODEL [--out DIR]`` writes the model's card instead: ``DIR/NAME-card.md`` (Markdown)
and ``DIR/NAME-card.json`` (the record model zoos read; :mod:`ftn.cards`), NAME being the shipped
name or the file's stem, DIR the current folder by default.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

__all__ = ["add_parser", "describe_axes", "write_card"]


def _cmd_info(args: argparse.Namespace) -> int:
    from .axes_io import STRUCTURE_KEY
    from .io import describe_metadata, read_metadata
    from .models import resolve

    if args.card:
        try:
            written = write_card(args.model, Path(args.out))
        except OSError as err:  # a folder not writable, a disk full: one line, not a traceback
            print(f"ftn info: error: {' '.join(str(err).split())}", file=sys.stderr)
            return 2
        print("wrote " + " and ".join(str(p) for p in written))
        return 0
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
    kind = "multi-axis model" if len(axes) > 1 else "multi-anchor model"
    lines = [f"{kind}: task {meta.get('task', '?')}, method {meta.get('method')} ({options}), "
             f"{len(axes)} {'axes' if len(axes) > 1 else 'axis'}, on {meta.get('arch')}"]
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

def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_card(model: str, out_dir: Path) -> tuple[Path, Path]:
    """Write ``NAME-card.md`` and ``NAME-card.json`` of ``model`` (a path or a shipped name) into ``out_dir``.

    Both are rendered before either is written, and each is written atomically, so a refusal leaves
    nothing behind; the model file itself is never a target.

    Raises:
        FileNotFoundError: no such model, or ``out_dir`` does not exist.
        ValueError: not a model file, or metadata that cannot make a card (:class:`ftn.cards.CardError`); one line.
    """
    import json

    from . import __version__
    from .cards import card_markdown, card_record, parameter_count
    from .io import move_into_place, read_header, read_metadata, temporary_beside
    from .models import resolve

    path = resolve(model)
    meta = read_metadata(path)
    header = read_header(path)
    if not out_dir.is_dir():
        raise FileNotFoundError(f"output folder does not exist: {out_dir}")
    record = card_record(
        meta, name=path.stem, file_name=path.name, size_bytes=path.stat().st_size, sha256=_sha256(path),
        parameters=parameter_count({k: shape for k, (shape, _) in header.items()}),
        dtypes=[dtype for _, dtype in header.values()], version=__version__,
    )
    texts = {out_dir / f"{path.stem}-card.md": card_markdown(record),
             out_dir / f"{path.stem}-card.json": json.dumps(record, indent=2, ensure_ascii=False) + "\n"}
    for target in texts:
        if target.exists() and target.resolve() == path.resolve():
            raise ValueError(f"{target} is the model file itself; choose another --out folder")
    for target, text in texts.items():
        tmp = temporary_beside(target)
        try:
            tmp.write_text(text, encoding="utf-8")
            move_into_place(tmp, target)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    return tuple(texts)  # type: ignore[return-value]


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Add ``ftn info`` to the ``ftn`` command's subparsers."""
    info = sub.add_parser("info", help="print a model file's metadata (a multi-axis model's axes in words first)")
    info.add_argument("model", help="a .safetensors model file or a shipped model's name (e.g. sr-pd-x4)")
    info.add_argument("--json", action="store_true", help="the metadata as JSON only")
    info.add_argument("--card", action="store_true",
                      help="write the model's card instead: NAME-card.md (Markdown) and NAME-card.json (the record model zoos "
                           "read), from the file's own metadata; missing fields say 'not recorded'")
    info.add_argument("--out", default=".", metavar="DIR", help="with --card: the folder the two files go to (default: here)")
    info.set_defaults(func=_cmd_info)
