"""TFDS builder of CASME II: 255 clips of 26 subjects at 200 fps, from the user's release.

The reader is `data_builders.records.read_casme2_release` (shared with the synthetic
database, which is written in CASME II layout). Config "raw" aligns the raw frames with
our face stage; "cropped" reads the official face crops and only resizes them.
"""

from pathlib import Path

from data_builders.clip_builder import ReleaseBuilder, ReleaseVariantConfig
from data_builders.records import CASME2_LAYOUT, ReleaseRecords, read_casme2_release

MANUAL_DOWNLOAD_INSTRUCTIONS = f"""\
CASME II is licence-gated. Request it from the Institute of Psychology, Chinese Academy
of Sciences (CASME II page of http://casme.psych.ac.cn, licence agreement signed by a
faculty member), unpack the release into one folder and pass that folder as manual_dir.
{CASME2_LAYOUT}.
Config "raw" reads CASME2_RAW_selected/, config "cropped" the official crops. Optional
landmarks sidecars: <root>/landmarks/sub01/EP02_01f.csv (columns frame,x_0..x_67,y_0..y_67).
"""


class Builder(ReleaseBuilder):
    """casme2: one "train" split, labels of the casme2_5class protocol."""

    BUILDER_CONFIGS = [
        ReleaseVariantConfig(name="raw", release="raw", description="CASME2_RAW_selected frames"),
        ReleaseVariantConfig(name="cropped", release="cropped", description="official crops"),
    ]
    PROTOCOL = "casme2_5class"
    MANUAL_DOWNLOAD_INSTRUCTIONS = MANUAL_DOWNLOAD_INSTRUCTIONS

    def read_release(self, manual_dir: Path) -> ReleaseRecords:
        """The CASME II release in manual_dir (see MANUAL_DOWNLOAD_INSTRUCTIONS)."""
        return read_casme2_release(manual_dir, release=self.builder_config.release)
