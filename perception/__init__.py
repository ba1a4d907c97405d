"""tad_perception: multi-task driving perception on a shared Swin encoder with TADFormer adapters."""
__version__ = "0.1.0"
