"""`casme3_lv`: CAS(ME)^3 Part A whole task recordings (Li et al. 2022), for spotting, as TFDS."""

from data_builders.casme3_lv.casme3_lv_dataset_builder import (
    MANUAL_DOWNLOAD_INSTRUCTIONS,
    Builder,
    read_casme3_lv,
)

__all__ = ["MANUAL_DOWNLOAD_INSTRUCTIONS", "Builder", "read_casme3_lv"]
