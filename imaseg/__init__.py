"""imaseg: train medical image segmenters that survive adversarial noise, and prove it."""

__version__ = "0.1.0"
__all__ = ["__version__"]
