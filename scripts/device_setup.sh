#!/usr/bin/env bash
# Put the data sent in .carry/ (ignored by git) where the configs expect it, ../shared/..., on the lent
# GPU machine (bare, no internet). Sourced by scripts/device_reproduce.sh and scripts/device_gan_ablation.sh.
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1
if [ -d .carry ]; then  # .carry/<group>/<folder> -> ../shared/<group>/<folder>, e.g. data/train/BSD432
  for d in $(cd .carry && find . -mindepth 2 -maxdepth 3 -type d -path './*/*' | sed 's#^\./##'); do
    parent=$(dirname "$d"); mkdir -p "../shared/$parent"
    [ -e "../shared/$d" ] || cp -r ".carry/$d" "../shared/$parent/"
  done
fi
if [ -f .carry/vgg16_fp16.safetensors.xz ] && [ ! -f ../shared/weights/vgg16_imagenet_features_caffe.safetensors ]; then  # VGG16 sent as float16 (xz) to fit the transfer limit
  mkdir -p ../shared/weights
  python3 - <<'PY'
import lzma, torch
from safetensors import safe_open
from safetensors.torch import load, save_file
raw = lzma.open(".carry/vgg16_fp16.safetensors.xz").read()
open("/tmp/vgg16_fp16.safetensors", "wb").write(raw)
with safe_open("/tmp/vgg16_fp16.safetensors", "pt") as f:
    meta = {k: v for k, v in (f.metadata() or {}).items() if k != "note"}
save_file({k: v.float() for k, v in load(raw).items()}, "../shared/weights/vgg16_imagenet_features_caffe.safetensors", metadata=meta)
PY
fi
python3 -c "import torch, ftn; print('torch', torch.__version__, torch.cuda.get_device_name() if torch.cuda.is_available() else 'no GPU')"
