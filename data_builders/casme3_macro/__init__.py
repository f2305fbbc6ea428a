"""`casme3_macro`: CAS(ME)^3 Part A macro-expression clips as frame pairs (MA2MI), as TFDS."""

from data_builders.casme3_macro.casme3_macro_dataset_builder import (
    MANUAL_DOWNLOAD_INSTRUCTIONS,
    Builder,
    Casme3MacroConfig,
    read_casme3_macro,
)

__all__ = ["MANUAL_DOWNLOAD_INSTRUCTIONS", "Builder", "Casme3MacroConfig", "read_casme3_macro"]
