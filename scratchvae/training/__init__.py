"""Training and evaluating a VAE: the loop (:mod:`.loop`), how to train (:mod:`.config`, :mod:`.presets`),
checkpoints (:mod:`.checkpoint`), run folders (:mod:`.runs`), evaluation with importance sampling
(:mod:`.evaluate`, :mod:`.diagnostics`) and figures (:mod:`.plots`)."""
from .config import TrainConfig
from .loop import load_checkpoint, save_checkpoint, train

__all__ = ["TrainConfig", "load_checkpoint", "save_checkpoint", "train"]
