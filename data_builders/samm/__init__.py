"""`samm`: SAMM (Davison et al. 2018) from the licensed release, as TFDS."""

from data_builders.samm.samm_dataset_builder import (
    MANUAL_DOWNLOAD_INSTRUCTIONS,
    Builder,
    read_samm,
    samm_subject_folder,
)

__all__ = ["MANUAL_DOWNLOAD_INSTRUCTIONS", "Builder", "read_samm", "samm_subject_folder"]
