"""`casme_sq`: CAS(ME)^2 (Qu et al. 2018) long videos, for spotting, as TFDS."""

from data_builders.casme_sq.casme_sq_dataset_builder import (
    MANUAL_DOWNLOAD_INSTRUCTIONS,
    Builder,
    read_casme_sq,
)

__all__ = ["MANUAL_DOWNLOAD_INSTRUCTIONS", "Builder", "read_casme_sq"]
