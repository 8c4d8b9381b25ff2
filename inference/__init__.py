"""Classifying tweets with a fine-tuned run, a Hub repo, or the base model by few-shot prompting."""
from .classifier import Classifier, FewShot, InputError, Prediction, SentimentModel
from .serving import ModelServer, NoModel, find_model

__all__ = ["Classifier", "FewShot", "InputError", "ModelServer", "NoModel", "Prediction", "SentimentModel",
           "find_model"]
