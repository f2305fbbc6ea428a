"""`casme2`: CASME II (Yan et al. 2014) from the licensed release, as TFDS."""

from data_builders.casme2.casme2_dataset_builder import MANUAL_DOWNLOAD_INSTRUCTIONS, Builder

__all__ = ["MANUAL_DOWNLOAD_INSTRUCTIONS", "Builder"]
