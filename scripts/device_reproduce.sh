#!/usr/bin/env bash
# Train the missing runs of reproduce recipes on one GPU, many runs at once, then evaluate the
# restoration ones there. Made for the lent GPU machine (bare, no internet): the data travels in
# .carry/ (ignored by git) and is put where the recipes expect it (../shared/...), so the runs'
# configs and evaluation caches are the same as on a machine with ../shared beside the repository.
#   RECIPES="configs/reproduce/mini.yaml" REPORT_RECIPES="configs/reproduce/mini.yaml" bash scripts/device_reproduce.sh
# writes $OUT/runs-<i>.tar (the runs trained here, packed below the transfer limits) and $OUT/device.log.
set -u
RECIPES=${RECIPES:-configs/reproduce/mini.yaml}
REPORT_RECIPES=${REPORT_RECIPES-$RECIPES}   # recipes evaluated here as well (restoration reports)
TRAIN_S=${TRAIN_S:-330}        # wall-clock cap for all training
REPORT_S=${REPORT_S:-150}      # wall-clock cap for the evaluation
ONLY=${ONLY:-}                 # optional: train only the runs matching these task/run patterns, e.g. "sr-rrdb/*"
OUT=${OUT:-/tmp/out}
LOGS=/tmp/device-logs; mkdir -p "$LOGS" "$OUT"
source scripts/device_setup.sh
runs_of() {  # runs_of WHICH: "recipe|task/run" of the missing runs; 1: those that can start now, 2: all
  python3 - "$1" $RECIPES <<'PY'
import fnmatch, os, sys; from benchmarks.reproduce.recipe import load_recipe; from pathlib import Path
which = sys.argv[1]
only = os.environ.get("ONLY", "").split()
wanted = lambda x: not only or any(fnmatch.fnmatch(x.key, pat) for pat in only)
for path in sys.argv[2:]:
    r = load_recipe(Path(path))
    ready = lambda x: x.stage == "base" or Path(x.config.base).is_file()
    own = lambda x: not (x.stage == "base" and r.raw.get("bases_from"))  # bases_from: another study's networks
    print(" ".join(f"{path}|{x.key}" for x in r.runs if own(x) and wanted(x) and not x.trained and (which == "2" or ready(x))))
PY
}
phase() {  # train each run in its own process, all at once
  local deadline=$1; shift
  for item in "$@"; do
    local recipe=${item%%|*} key=${item#*|}
    local log="$LOGS/$(basename "$recipe" .yaml)_${key//\//_}.log"
    timeout "$deadline" python3 -m benchmarks.reproduce --recipe "$recipe" --no-progress --set train.threads=1 \
      --only-train --only "$key" >"$log" 2>&1 &
  done
  wait
}
python3 - $RECIPES <<'PY' || exit 1
import sys; from benchmarks.reproduce.recipe import load_recipe; from pathlib import Path
missing = sorted({r.config.train_data for p in sys.argv[1:] for r in load_recipe(Path(p)).runs
                  if not r.trained and not Path(r.config.train_data).is_dir()})
if missing:
    sys.exit(f"training data missing: {missing} (put them under .carry/<path below ../shared>)")
PY
START=$(date +%s)
START_MARK=/tmp/device-start-mark; touch "$START_MARK"
# rounds: each starts every missing run that can start (a stage-1 network, or a tuner whose base
# exists) and waits for them; a run cut off by the time cap resumes from its checkpoint next round
ROUND=1
while true; do
  LEFT=$(( TRAIN_S - ($(date +%s) - START) ))
  READY=$(runs_of 1 | xargs)
  [ -z "$READY" ] || [ "$LEFT" -lt 20 ] && break
  echo "round $ROUND (${LEFT} s left): $READY"
  phase "$LEFT" $READY
  echo "round $ROUND done after $(( $(date +%s) - START )) s"
  ROUND=$((ROUND + 1))
  [ "$ROUND" -gt 5 ] && break
done
echo "still missing: $(runs_of 2 | xargs)"
for recipe in $REPORT_RECIPES; do
  timeout "$REPORT_S" python3 -m benchmarks.reproduce --recipe "$recipe" --no-progress --only-report --out /tmp/report \
    >"$LOGS/report_$(basename "$recipe" .yaml).log" 2>&1
  echo "report $recipe: exit $? after $(( $(date +%s) - START )) s"
done
for f in "$LOGS"/*.log; do echo "=== $f"; tail -n 12 "$f"; done >"$OUT/device.log"
# runs trained here, packed into tars of at most 15 MB: what comes back is at most 8 files of 16 MiB
# (64 MiB in all), and a tar per task of five RRDBNet tuners (42 MB) was once refused and lost.
# Checkpoints of runs cut off by the time cap hold GAN discriminators (about 170 MB): left behind.
python3 - "$OUT" "$START_MARK" $RECIPES <<'PY'
import os, sys, tarfile, yaml
from pathlib import Path
out, mark, recipes = Path(sys.argv[1]), os.path.getmtime(sys.argv[2]), sys.argv[3:]
runs = []
for recipe in recipes:
    root = Path(yaml.safe_load(open(recipe))["runs_dir"])
    for model in sorted(root.glob("*/*/model.safetensors")):
        if model.stat().st_mtime > mark:
            files = [f for f in model.parent.iterdir() if f.is_file() and f.name != "checkpoint.safetensors" and not f.name.endswith(".tmp")]
            runs.append((sum(f.stat().st_size for f in files), files))
bins = []  # first fit, largest first
for size, files in sorted(runs, key=lambda r: -r[0]):
    for b in bins:
        if b[0] + size <= 15_000_000:
            b[0] += size; b[1].extend(files); break
    else:
        bins.append([size, list(files)])
if len(bins) > 7 or sum(b[0] for b in bins) > 60_000_000:
    print(f"WARNING: {len(bins)} tars, {sum(b[0] for b in bins)} bytes: over what can come back")
for i, (size, files) in enumerate(bins):
    with tarfile.open(out / f"runs-{i}.tar", "w") as tar:
        for f in files:
            tar.add(f)
    print(f"runs-{i}.tar: {size} bytes, {len(files)} files")
PY
ls -la "$OUT"
