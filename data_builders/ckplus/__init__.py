"""`ckplus`: CK+ (Lucey et al. 2010) sequences as frame pairs (MA2MI pre-training), as TFDS."""

from data_builders.ckplus.ckplus_dataset_builder import (
    MANUAL_DOWNLOAD_INSTRUCTIONS,
    Builder,
    read_ckplus,
)

__all__ = ["MANUAL_DOWNLOAD_INSTRUCTIONS", "Builder", "read_ckplus"]
