"""The command line of :mod:`benchmarks.reproduce`: ``python -m benchmarks.reproduce --recipe ... [--only-report]``."""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import torch

import benchmarks.reproduce as package
from benchmarks.reproduce.perceptual import build_perceptual_sections, is_perceptual
from benchmarks.reproduce.recipe import ROOT, load_recipe, rel, select_runs
from benchmarks.reproduce.report import build_report
from benchmarks.reproduce.training import duration, train_all


def main(argv: Sequence[str] | None = None) -> int:
    """Train what is missing (unless ``--only-report``), then write ``<out>/results.md`` and its figures."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.reproduce", description=(package.__doc__ or "").split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", required=True, type=Path, action="append",
                        help="e.g. configs/reproduce/mini.yaml; repeat it to put several studies in one results.md "
                             "(restoration first, then configs/reproduce/perceptual.yaml)")
    parser.add_argument("--out", type=Path, default=None, help="report folder (default: the first recipe's `out`, else docs)")
    parser.add_argument("--only-report", action="store_true", help="train nothing; report from the runs that exist")
    parser.add_argument("--only-train", action="store_true", help="train, then stop without evaluating")
    parser.add_argument("--stop-after", type=float, default=None, metavar="MIN",
                        help="start no new training run after MIN minutes (a run in progress finishes)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a recipe key, e.g. --set runs_dir=/tmp/runs --set eval.limit=5 (repeatable)")
    parser.add_argument("--only", action="append", default=[], metavar="PATTERN",
                        help="train only the runs whose key matches, e.g. 'dejpeg/*' or 'denoise/ftn*' (repeatable; "
                             "lets separate processes share one GPU); a selected run whose weight file is absent "
                             "is trained again")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)

    recipe_paths = [p.resolve() for p in args.recipe]
    out_arg = args.out.resolve() if args.out is not None else None
    os.chdir(ROOT)  # recipe paths are relative to the repository root
    recipes = [load_recipe(p, args.overrides) for p in recipe_paths]
    if args.only and not any(select_runs(r.runs, args.only) for r in recipes):
        keys = ", ".join(run.key for r in recipes for run in r.runs)
        raise SystemExit(f"reproduce: --only {' '.join(args.only)} matches no run; runs: {keys}")
    out = out_arg or recipes[0].out
    if recipes[0].threads:
        torch.set_num_threads(int(recipes[0].threads))
    progress = not args.no_progress and sys.stderr.isatty()
    t0 = time.perf_counter()
    trained = 0
    if not args.only_report:
        for recipe in recipes:
            trained += train_all(recipe, progress=progress, only=args.only,
                                 stop_after_s=None if args.stop_after is None else 60 * args.stop_after)
    if args.only_train:
        print(f"reproduce: trained {trained} run(s) in {duration(time.perf_counter() - t0)}")
        return 0

    out.mkdir(parents=True, exist_ok=True)
    texts, counts = [], {"evaluated": 0, "cached": 0}
    for recipe in recipes:
        if is_perceptual(recipe):
            text, c, _ = build_perceptual_sections(recipe, out, progress=not args.no_progress)
            text = (f"Sections below: `--recipe {rel(recipe.path)}` (runs under `{recipe.runs_dir}`).\n\n" + text)
        else:
            text, c = build_report(recipe, out, progress=not args.no_progress)
        texts.append(text.rstrip())
        counts = {k: counts[k] + c[k] for k in counts}
    if len(recipes) > 1:
        command = "python -m benchmarks.reproduce " + " ".join(f"--recipe {rel(r.path)}" for r in recipes)
        texts[0] = texts[0].replace("\n", f"\n\nThis document: `{command}` (the studies one after another).\n", 1)
    (out / "results.md").write_text("\n\n".join(texts) + "\n")
    print(f"reproduce: trained {trained} run(s), evaluated {counts['evaluated']} item(s) "
          f"(cached {counts['cached']}), wrote {out / 'results.md'} in {duration(time.perf_counter() - t0)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
