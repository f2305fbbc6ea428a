"""`megc2019`: the MEGC 2019 composite (CASME II + SAMM + SMIC-HS, 3 classes), as TFDS."""

from data_builders.megc2019.megc2019_dataset_builder import (
    COMPOSITE_LIST,
    MANUAL_DOWNLOAD_INSTRUCTIONS,
    Builder,
    CompositeEntry,
    composite_entries,
    read_megc2019,
    select_composite,
)

__all__ = [
    "COMPOSITE_LIST",
    "MANUAL_DOWNLOAD_INSTRUCTIONS",
    "Builder",
    "CompositeEntry",
    "composite_entries",
    "read_megc2019",
    "select_composite",
]
