"""Training in plain PyTorch: stage 1 (a base network at level 1) and stage 2 (a tuner at level 2).

    from ftn.train import load_config, train
    config = load_config("configs/denoise-base.yaml", ["iterations=100"])
    model_path = train(config)              # runs/denoise-base/model.safetensors

or ``ftn train configs/denoise-base.yaml``. See :mod:`ftn.train.loop` for the loop and
:mod:`ftn.train.checkpoint` for the resumable checkpoint format.
"""

from .checkpoint import load_checkpoint, read_checkpoint_info, save_checkpoint
from .config import TrainConfig, config_to_dict, load_config, validate_config
from .loop import TrainingDiverged, train

__all__ = [
    "TrainConfig",
    "TrainingDiverged",
    "config_to_dict",
    "load_checkpoint",
    "load_config",
    "read_checkpoint_info",
    "save_checkpoint",
    "train",
    "validate_config",
]
