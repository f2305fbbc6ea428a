"""`casme3`: CAS(ME)^3 Part A micro-expressions (Li et al. 2022) from the release, as TFDS."""

from data_builders.casme3.casme3_dataset_builder import (
    MANUAL_DOWNLOAD_INSTRUCTIONS,
    Builder,
    read_casme3,
)

__all__ = ["MANUAL_DOWNLOAD_INSTRUCTIONS", "Builder", "read_casme3"]
