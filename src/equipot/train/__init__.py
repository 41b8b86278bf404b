"""Training: config, loss, optimiser / schedule / EMA, trainer loop, checkpoints, DDP."""

from equipot.train.config import TrainConfig, load_config
from equipot.train.evaluate import evaluate_dataset
from equipot.train.run import TrainResult, train

__all__ = ["TrainConfig", "TrainResult", "evaluate_dataset", "load_config", "train"]
