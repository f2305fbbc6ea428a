"""A deterministic synthetic micro-expression database in the CASME II on-disk layout.

Real MER databases are licence-gated; this one lets the toolkit's default run
train end to end through the same builder code as real data. See
`generate_database` and `SyntheticSpec` (its fields are the difficulty knobs).
"""

from mer_jax.synthetic.generator import (
    CASME2_EMOTION_COUNTS,
    CODING_COLUMNS,
    CODING_SHEET,
    FRAMES_DIR,
    GENERATOR_VERSION,
    LANDMARKS_DIR,
    MANIFEST,
    SyntheticSpec,
    generate_database,
)

__all__ = [
    "CASME2_EMOTION_COUNTS",
    "CODING_COLUMNS",
    "CODING_SHEET",
    "FRAMES_DIR",
    "GENERATOR_VERSION",
    "LANDMARKS_DIR",
    "MANIFEST",
    "SyntheticSpec",
    "generate_database",
]
