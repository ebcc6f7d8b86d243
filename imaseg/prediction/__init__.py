"""Segment new, unlabelled images with a trained run: ``imaseg predict``."""

from imaseg.prediction.config import PredictConfig
from imaseg.prediction.inputs import find_images
from imaseg.prediction.predict import predict

__all__ = ["PredictConfig", "find_images", "predict"]
