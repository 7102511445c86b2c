#!/usr/bin/env bash
# Which term of the GAN-level objective makes the dot-grid artefact of PD-SR stage 2? One GPU, all at
# once: the sr-cfsnet DNI run (a full fine-tune, as ESRGAN's GAN stage) retrained with one change each.
#   ABL_S=200 bash scripts/device_gan_ablation.sh   ->  $OUT/ablation.tar (reproduce/runs/gan-ablation/<variant>/...)
# Back here: tar xf ablation.tar; python -m benchmarks.gan_ablation (NIQE / PSNR at alpha 1 on Set5 + Set14;
# it writes the weights' lines of reproduce/runs/gan-ablation/MANIFEST.tsv, the weights stay out of git).
# (The committed runs were trained into runs/gan-ablation/ and moved; their config.yaml still says so.)
set -u
OUT=${OUT:-/tmp/out}; ABL_S=${ABL_S:-200}; ITERS=${ITERS:-1500}
mkdir -p "$OUT"
if [ -d reproduce/runs/gan-ablation ]; then  # the committed results: a rerun must not mix with them
  echo "reproduce/runs/gan-ablation exists (the last results): move it away first (mv reproduce/runs/gan-ablation /tmp/)" >&2
  exit 2
fi
source scripts/device_setup.sh
CONFIG=reproduce/runs/perceptual/sr-cfsnet/dni/config.yaml
declare -A VARIANTS=(
  [reference]=""                                           # the recipe's run again (same seed)
  [no-gan]="--set task_options.gan_weight=0"               # L1 + VGG only
  [no-vgg]="--set task_options.perceptual_weight=0"        # L1 + GAN only
  [d-mini]="--set task_options.discriminator=mini"         # a weaker discriminator
  [d-lr-1e-5]="--set task_options.discriminator_lr=1.0e-5" # a slower discriminator
  [g-lr-1e-5]="--set lr=1.0e-5"                            # a slower generator
  [vgg-conv4_3]="--set task_options.perceptual_layer=conv4_3 --set task_options.perceptual_weight=0.0075"  # a shallower layer, its term at the same start magnitude (146 vs 21.8 raw)
)
for name in "${!VARIANTS[@]}"; do
  timeout "$ABL_S" python3 -m ftn.train.cli "$CONFIG" --no-progress --set out_dir=reproduce/runs/gan-ablation/$name \
    --set iterations=$ITERS --set threads=1 --set name=gan-ablation-$name ${VARIANTS[$name]} \
    >"$OUT/log-$name.txt" 2>&1 &
done
wait
tar cf "$OUT/ablation.tar" --exclude=checkpoint.safetensors --exclude='*.tmp' reproduce/runs/gan-ablation
for f in "$OUT"/log-*.txt; do echo "== $f"; tail -n 2 "$f"; done
tail -n 1 reproduce/runs/gan-ablation/*/log.csv
