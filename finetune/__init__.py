"""Fine-tuning GPT-2 (or any causal LM) for 3-class tweet sentiment: config → data → training → a run folder."""
from .config import TrainConfig
from core.labels import LABELS
from core.errors import UserError

__all__ = ["LABELS", "TrainConfig", "UserError"]
