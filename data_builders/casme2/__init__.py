"""`casme2`: CASME II (Yan et al. 2014) from the licensed release, as TFDS."""

from data_builders.casme2.casme2_dataset_builder import (
    CASME2_FRAME_FOLDERS,
    CASME2_LAYOUT,
    MANUAL_DOWNLOAD_INSTRUCTIONS,
    Builder,
    casme2_subject_folder,
    read_casme2,
    read_casme2_release,
)

__all__ = [
    "CASME2_FRAME_FOLDERS",
    "CASME2_LAYOUT",
    "MANUAL_DOWNLOAD_INSTRUCTIONS",
    "Builder",
    "casme2_subject_folder",
    "read_casme2",
    "read_casme2_release",
]
