"""`mmew`: MMEW micro-expressions (Ben et al. 2021) from the licensed release, as TFDS."""

from data_builders.mmew.mmew_dataset_builder import (
    MANUAL_DOWNLOAD_INSTRUCTIONS,
    Builder,
    read_mmew,
)

__all__ = ["MANUAL_DOWNLOAD_INSTRUCTIONS", "Builder", "read_mmew"]
