"""`smic`: SMIC-HS (Li et al. 2013) from the licensed release, as TFDS."""

from data_builders.smic.smic_dataset_builder import (
    MANUAL_DOWNLOAD_INSTRUCTIONS,
    Builder,
    read_smic,
)

__all__ = ["MANUAL_DOWNLOAD_INSTRUCTIONS", "Builder", "read_smic"]
