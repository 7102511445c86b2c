"""The report of a folder run (``ftn run -i DIR -o OUT``) and what ``--resume`` trusts in it.

Each row says what was done with one image (level, alpha, time, sizes) and records what made its
output: the model (as named, and its file's sha256), the setting that decides the pixels
(``options``: the alpha, the estimate or the alpha map's sha256, the tiling, and the quality of lossy
formats), ftn's version, the input's sha256, and the output's size and sha256.

``--resume`` skips an output only when it exists, is not empty, still has the recorded size and
sha256 (so it is the complete file that was written), and its record matches the run being resumed
(model file, setting, ftn version, input). Anything else is redone and the reason counted, including
an output with no record (no report, a report from an older ftn, a failed row): nothing then shows how
it was made. A report that cannot be read is refused (one line), never overwritten silently.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

__all__ = ["MAX_REPORT_BYTES", "REASONS", "options_text", "read_report", "resume_reason", "resume_summary", "sha256_file", "write_report"]

#: Why an output is not skipped by ``--resume`` (key -> words for the summary line).
REASONS = {
    "missing": "not made yet",
    "incomplete": "empty, incomplete or changed since",
    "unrecorded": "no record of how it was made",
    "model": "made with another model",
    "setting": "made with another setting",
    "version": "made by another ftn version",
    "input": "its input changed",
}
MAX_REPORT_BYTES = 256 << 20  # about 250 000 images; a larger file is not a report ftn wrote
_LOSSY = (".jpg", ".jpeg", ".webp")  # where --quality changes the pixels
# record column -> the reason an output is redone when it differs (checked in this order)
_MATCHED = (("model_sha256", "model"), ("options", "setting"), ("ftn_version", "version"))


def sha256_file(path: str | os.PathLike) -> str:
    """The sha256 hex digest of a file's bytes (read in chunks)."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def options_text(setting: dict[str, Any], output: Path, quality: int) -> str:
    """The canonical text (sorted JSON) of what decides ``output``'s pixels besides model and input.

    ``setting`` holds the run's level choice and tiling; ``quality`` is added for lossy formats only,
    so that ``--quality`` does not redo PNG outputs.
    """
    record = dict(setting)
    if output.suffix.lower() in _LOSSY:
        record["quality"] = int(quality)
    return json.dumps(record, sort_keys=True, separators=(",", ":"))


def resume_reason(row: dict[str, Any] | None, source: Path, output: Path, current: dict[str, str]) -> str | None:
    """None when ``output`` is done as ``current`` asks (skip it); else why it is redone (a key of REASONS).

    ``row`` is the earlier report's row for ``source`` (None if none); ``current`` holds this run's
    ``model_sha256``, ``options`` (for this output) and ``ftn_version``. The input is hashed only when
    everything else matches.
    """
    try:
        size = output.stat().st_size if output.is_file() else None
    except OSError:
        size = None
    if size is None:
        return "missing"
    if size == 0:
        return "incomplete"
    recorded = row is not None and row.get("status") == "done" and str(row.get("output")) == str(output) and all(
        row.get(key) not in (None, "") for key in ("output_sha256", "output_bytes", "input_sha256", *dict(_MATCHED))
    )
    if not recorded:
        return "unrecorded"
    if str(row["output_bytes"]) != str(size) or str(row["output_sha256"]) != sha256_file(output):
        return "incomplete"
    for key, reason in _MATCHED:
        if str(row[key]) != str(current[key]):
            return reason
    if str(row["input_sha256"]) != sha256_file(source):
        return "input"
    return None


def resume_summary(reasons: Sequence[str | None]) -> str:
    """One line: how many outputs ``--resume`` skips, and how many it makes or redoes, by reason."""
    counts = Counter(r for r in reasons if r is not None)
    skipped = len(reasons) - sum(counts.values())
    parts = [f"--resume: {skipped} of {len(reasons)} outputs exist and are skipped (complete; same model, setting "
             "and ftn version)"]
    if counts["missing"]:
        parts.append(f"{counts['missing']} not made yet")
    parts += [f"{counts[key]} redone ({words})" for key, words in REASONS.items() if key != "missing" and counts[key]]
    return "; ".join(parts)


def read_report(path: Path) -> list[dict[str, Any]]:
    """Rows of an earlier report (.json list or .csv), for ``--resume``.

    Raises:
        ValueError: (one line) the file cannot be read or is not a list of per-file records.
    """
    import csv

    try:
        if path.stat().st_size > MAX_REPORT_BYTES:
            raise ValueError(f"larger than {MAX_REPORT_BYTES >> 20} MiB; a report holds about 1 KB per image")
        if path.suffix.lower() == ".csv":
            with open(path, newline="") as f:
                rows: Any = list(csv.DictReader(f))
            if rows and "input" not in rows[0]:
                raise ValueError("no 'input' column")
        else:
            rows = json.loads(path.read_text())
        if not isinstance(rows, list) or not all(isinstance(r, dict) and "input" in r for r in rows):
            raise ValueError("not a list of per-file records")
        return rows
    except (OSError, ValueError, UnicodeDecodeError, RecursionError) as err:
        text = " ".join(str(err).split())[:200]
        raise ValueError(f"cannot read the earlier report {path} for --resume ({text}); move it away") from None


def write_report(path: Path, rows: Iterable[dict[str, Any]], columns: Sequence[str]) -> None:
    """Write the report atomically (a temporary file renamed over it), so it is never half-written."""
    import csv
    import io
    import tempfile

    from ..io import move_into_place

    rows = list(rows)
    if path.suffix.lower() == ".csv":
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=list(columns), extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
        text = buffer.getvalue()
    else:
        text = json.dumps(rows, indent=1) + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", newline="") as f:
            f.write(text)
        move_into_place(tmp, path)  # the umask's mode, not mkstemp's 0600
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
