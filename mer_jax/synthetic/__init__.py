"""A deterministic synthetic micro-expression database in the CASME II on-disk layout.

Real MER databases are licence-gated; this one lets the toolkit's default run
train end to end through the same builder code as real data. Clips are cut from
long recordings rendered per subject (`render_frames`), as the real databases were
made. See `generate_database` and `SyntheticSpec` (its fields are the realism
switches, docs/instrument.md).
"""

from mer_jax.synthetic.generator import (
    CODING_COLUMNS,
    CODING_SHEET,
    FRAMES_DIR,
    LANDMARKS_DIR,
    MANIFEST,
    generate_database,
)
from mer_jax.synthetic.recordings import (
    CASME2_EMOTION_COUNTS,
    GENERATOR_VERSION,
    Recording,
    SyntheticSpec,
    all_recordings,
    database_summary,
    plan_recordings,
    subject_identity,
)
from mer_jax.synthetic.render import render_frames

__all__ = [
    "CASME2_EMOTION_COUNTS",
    "CODING_COLUMNS",
    "CODING_SHEET",
    "FRAMES_DIR",
    "GENERATOR_VERSION",
    "LANDMARKS_DIR",
    "MANIFEST",
    "Recording",
    "SyntheticSpec",
    "all_recordings",
    "database_summary",
    "generate_database",
    "plan_recordings",
    "render_frames",
    "subject_identity",
]
