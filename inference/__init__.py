"""Classifying tweets with a fine-tuned run, a Hub repo, or the base model by few-shot prompting."""
from .classifier import Classifier, FewShot, InputError, Prediction, SentimentModel
from .serving import ModelLoading, ModelServer, NoModel, find_model

__all__ = ["Classifier", "FewShot", "InputError", "ModelLoading", "ModelServer", "NoModel", "Prediction", "SentimentModel",
           "find_model"]
