#!/usr/bin/env bash
# Train the missing runs of a reproduce recipe on one GPU, many runs at once, then evaluate them there.
# Made for the lent GPU machine (bare, no internet): the data travels in .carry/ (ignored by git) and is
# put where the recipe expects it (../shared/data/...), so the runs' configs and evaluation caches are
# the same as on a machine with ../shared beside the repository.
#   bash scripts/device_reproduce.sh configs/reproduce/mini.yaml  # writes $OUT/runs-<task>.tar and $OUT/device.log
set -u
RECIPE=${1:-configs/reproduce/mini.yaml}
TRAIN_S=${TRAIN_S:-330}        # wall-clock cap for all training
REPORT_S=${REPORT_S:-150}      # wall-clock cap for the evaluation
OUT=${OUT:-/tmp/out}
LOGS=/tmp/device-logs; mkdir -p "$LOGS" "$OUT"
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1
if [ -d .carry ]; then
  mkdir -p ../shared/data/train ../shared/data/test
  for d in .carry/train/*; do [ -e "../shared/data/train/$(basename "$d")" ] || cp -r "$d" ../shared/data/train/; done
  for d in .carry/test/*; do [ -e "../shared/data/test/$(basename "$d")" ] || cp -r "$d" ../shared/data/test/; done
fi
python3 -c "import torch, ftn; print('torch', torch.__version__, torch.cuda.get_device_name() if torch.cuda.is_available() else 'no GPU')"
R="python3 benchmarks/reproduce.py --recipe $RECIPE --no-progress --set train.threads=1 --only-train"
phase() {  # train each named run in its own process, all at once
  local deadline=$1; shift
  for k in "$@"; do
    timeout "$deadline" $R --only "$k" >"$LOGS/${k//\//_}.log" 2>&1 &
  done
  wait
}
START=$(date +%s)
# phase 1: every stage-1 base and from-scratch network; phase 2: every stage-2 run (needs its base)
BASES=$(python3 - "$RECIPE" <<'PY'
import sys; sys.path.insert(0, "benchmarks"); from reproduce import load_recipe; from pathlib import Path
r = load_recipe(Path(sys.argv[1])); print(" ".join(x.key for x in r.runs if x.stage == "base" and not x.model_path.is_file()))
PY
)
TUNERS=$(python3 - "$RECIPE" <<'PY'
import sys; sys.path.insert(0, "benchmarks"); from reproduce import load_recipe; from pathlib import Path
r = load_recipe(Path(sys.argv[1])); print(" ".join(x.key for x in r.runs if x.stage == "tuner" and not x.model_path.is_file()))
PY
)
echo "bases: $BASES"; echo "tuners: $TUNERS"
phase "$TRAIN_S" $BASES
LEFT=$(( TRAIN_S - ($(date +%s) - START) )); [ "$LEFT" -lt 30 ] && LEFT=30
echo "phase 1 done after $(( $(date +%s) - START )) s"
phase "$LEFT" $TUNERS
echo "training done after $(( $(date +%s) - START )) s"
timeout "$REPORT_S" python3 benchmarks/reproduce.py --recipe "$RECIPE" --no-progress --only-report --out /tmp/report \
  >"$LOGS/report.log" 2>&1
echo "report exit $? after $(( $(date +%s) - START )) s"
for f in "$LOGS"/*.log; do echo "=== $f"; tail -n 15 "$f"; done >"$OUT/device.log"
RUNS=$(python3 -c "import sys,yaml; print(yaml.safe_load(open('$RECIPE'))['runs_dir'])")
for t in "$RUNS"/*/; do tar cf "$OUT/runs-$(basename "$t").tar" "$t"; done
[ -f "$RUNS/complexity.json" ] && cp "$RUNS/complexity.json" "$OUT/"
ls -la "$OUT"
