"""TFDS builder of `synthetic_macro`: frame pairs of a synthetic macro-expression corpus.

The raw corpus is generated once by `mer_jax.synthetic.generate_database` with
`SyntheticSpec(kind="macro", ...)` (3-8 px expressions of 0.5-4 s at 30 fps, cut from
long recordings, its own identities, drawn from other random streams than synthetic_me's)
in CASME II
layout with a landmarks sidecar, and read with the CASME II reader. Pairs are cut
within onset..offset of each clip (`data_builders.macro_pairs`).

Subjects are namespaced `synthetic_macro/sub01`: other people than synthetic_me's
`synthetic_me/sub01`, so no synthetic micro test subject is in this corpus.
"""

import dataclasses
from pathlib import Path

import tensorflow_datasets as tfds

from data_builders.casme2 import read_casme2
from data_builders.macro_pairs import MacroPairsBuilder, MacroPairsConfig
from data_builders.records import MacroRelease, clip_from_record
from mer_jax.synthetic import GENERATOR_VERSION, SyntheticSpec, database_summary, generate_database

DATASET = "synthetic_macro"
_GENERATOR_DEFAULTS = SyntheticSpec(kind="macro")


@dataclasses.dataclass(eq=False)
class SyntheticMacroConfig(MacroPairsConfig):
    """Generator spec fields (see `mer_jax.synthetic.SyntheticSpec`) plus the pair options.

    The defaults are the generator's macro defaults.
    """

    num_subjects: int = _GENERATOR_DEFAULTS.num_subjects
    clips_per_subject: int = _GENERATOR_DEFAULTS.clips_per_subject
    seed: int = _GENERATOR_DEFAULTS.seed

    def spec(self) -> SyntheticSpec:
        """The generator spec of this config."""
        return SyntheticSpec(
            kind="macro",
            num_subjects=self.num_subjects,
            clips_per_subject=self.clips_per_subject,
            seed=self.seed,
        )


class Builder(MacroPairsBuilder):
    """synthetic_macro: one "train" split of frame pairs; subjects are generated people."""

    VERSION = tfds.core.Version("2.0.0")
    RELEASE_NOTES = {
        "1.0.0": "Initial release.",
        "2.0.0": "Generator 2: clips cut from long recordings (docs/instrument.md).",
    }
    BUILDER_CONFIGS = [SyntheticMacroConfig(name="default", description="generator defaults")]
    IDENTITIES = "generated people (synthetic_macro/subNN), none of them synthetic_me's"

    def generated_summary(self) -> dict:
        """What the build would hold, from the generator's plan alone (the dry run)."""
        return {"name": self.name, "config": self.builder_config.name} | database_summary(
            self.builder_config.spec()
        )

    def _read_clips(self, dl_manager: tfds.download.DownloadManager) -> MacroRelease:
        spec = self.builder_config.spec()
        raw_dir = raw_database_dir(Path(dl_manager.download_dir), spec)
        if not raw_dir.is_dir():
            # The generator writes into a staging directory and renames it when
            # complete, so an existing raw_dir is always a finished database.
            generate_database(raw_dir, spec, workers=self._workers, progress=True)
        records = read_casme2(raw_dir, dataset=DATASET, fps=float(spec.fps))
        clips = tuple(
            clip_from_record(record, dataset=DATASET, clip=record.filename) for record in records
        )
        return MacroRelease(DATASET, raw_dir, clips)


def raw_database_dir(download_dir: Path, spec: SyntheticSpec) -> Path:
    """Where the raw corpus of a spec lives; one already there is reused.

    Named by the generator fields, so configs differing only in pair options share it.
    """
    return download_dir / (
        f"synthetic_macro_raw_v{GENERATOR_VERSION}_s{spec.num_subjects}"
        f"_c{spec.clips_per_subject}_seed{spec.seed}"
    )
