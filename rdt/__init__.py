"""Reproducible fine-tuning and LIBERO evaluation of the Robotics Diffusion Transformer (RDT-1B / RDT-170M)."""

__version__ = "0.1.0"
