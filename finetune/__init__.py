"""Fine-tuning GPT-2 (or any causal LM) for 3-class tweet sentiment: config → data → training → a run folder."""
from .config import LABELS, TrainConfig
from .errors import UserError

__all__ = ["LABELS", "TrainConfig", "UserError"]
