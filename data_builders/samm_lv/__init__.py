"""`samm_lv`: SAMM long videos (Yap et al. 2020), whole recordings for spotting, as TFDS."""

from data_builders.samm_lv.samm_lv_dataset_builder import (
    MANUAL_DOWNLOAD_INSTRUCTIONS,
    Builder,
    read_samm_lv,
)

__all__ = ["MANUAL_DOWNLOAD_INSTRUCTIONS", "Builder", "read_samm_lv"]
