#!/usr/bin/env bash
# One GPU leg of the long shipped-model runs (configs/ship/), on a lent GPU machine (bare, no internet).
# The same recipe as the CPU legs, with a larger batch and bf16 autocast; it resumes from the
# checkpoints committed in git (they travel with the working tree), pauses after MINUTES, and packs
# each stage's checkpoint (a few MB) into $OUT under its repository path. Back here: copy them over
# the run folders (cp -r <files_at>/reproduce .), commit the checkpoints (git add -f), and the next
# leg, on a CPU or a GPU, goes on from there.
#
#   mkdir -p .carry/data/train .carry/data/test && cp -r ../shared/data/train/BSD432 .carry/data/train/ \
#     && cp -r ../shared/data/test/Set14 .carry/data/test/        # once, here: the data the recipes read
#   run: MINUTES=8 TASKS="denoise dejpeg" bash scripts/device_ship.sh   (carry: [".carry"])
#
# On a CPU the same script runs a leg for tests: DEVICE=cpu BATCH=16 AMP=false MINUTES=0.1 OUT=/tmp/o bash scripts/device_ship.sh
set -u
MINUTES=${MINUTES:-8}          # the leg's training time; leave a margin under the call's limit for start and packing
TASKS=${TASKS:-denoise dejpeg}
DEVICE=${DEVICE:-cuda}
BATCH=${BATCH:-64}             # 4x the CPU batch: the GPU is idle at 16 x 64 px
AMP=${AMP:-true}
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
source scripts/device_setup.sh
# each task's stages in their own process, side by side (one GPU holds both easily)
for task in $TASKS; do
  python3 scripts/ship_models.py --tasks "$task" --no-install --set "device=$DEVICE" --set "batch_size=$BATCH" \
    --set "amp=$AMP" --stop-after "$MINUTES" --pack "$OUT" >"$OUT/ship-$task.log" 2>&1 &
done
wait
tail -n 5 "$OUT"/ship-*.log
find "$OUT" -type f -newer "$0" -printf "%s %p\n" | sort -n
