"""`synthetic_macro`: a synthetic macro-expression corpus of frame pairs (MA2MI), as TFDS."""

from data_builders.synthetic_macro.synthetic_macro_dataset_builder import (
    Builder,
    SyntheticMacroConfig,
)

__all__ = ["Builder", "SyntheticMacroConfig"]
