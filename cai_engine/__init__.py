"""cai-engine: Constitutional AI and RLAIF data generation and training."""

__version__ = "0.1.0"
