"""Shared code for the CNN course notebooks: data, models, training, checks, grading."""

__version__ = "0.1.0"
