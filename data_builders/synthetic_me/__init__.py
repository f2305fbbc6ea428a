"""`synthetic_me`: a synthetic micro-expression database in CASME II layout, as TFDS."""

from data_builders.synthetic_me.synthetic_me_dataset_builder import Builder, SyntheticMEConfig

__all__ = ["Builder", "SyntheticMEConfig"]
