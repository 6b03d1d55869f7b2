"""Training: the one torch training loop of the project (:mod:`.loop`)."""
from .loop import TrainingConfig, TrainResult, train_loop

__all__ = ["TrainingConfig", "TrainResult", "train_loop"]
