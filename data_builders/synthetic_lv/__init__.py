"""`synthetic_lv`: the synthetic database's long recordings whole, for spotting, as TFDS."""

from data_builders.synthetic_lv.synthetic_lv_dataset_builder import (
    Builder,
    SyntheticLVConfig,
    recording_motion,
)

__all__ = ["Builder", "SyntheticLVConfig", "recording_motion"]
