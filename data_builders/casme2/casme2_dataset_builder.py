"""TFDS builder of CASME II: 255 clips of 26 subjects at 200 fps, from the user's release.

Its reader, `read_casme2_release`, also reads the synthetic databases, which are written
in CASME II layout. Config "raw" aligns the raw frames with our face stage; "cropped"
reads the official face crops and only resizes them.

CASME II layout, as shipped by the CASME II authors:

    <root>/CASME2-coding-<date>.xlsx          the coding sheet
    <root>/CASME2_RAW_selected/sub01/EP02_01f/img46.jpg ...   raw frames, or
    <root>/Cropped/sub01/EP02_01f/reg_img46.jpg ...           face-cropped frames
                                          (also `Cropped-updated/`)
    <root>/landmarks/sub01/EP02_01f.csv       optional landmarks sidecar
"""

import functools
import re
from collections.abc import Sequence
from pathlib import Path

from data_builders.clip_builder import ReleaseBuilder, ReleaseVariantConfig
from data_builders.errata import Erratum
from data_builders.reading import Frames, SheetReader
from data_builders.records import ClipRecord, ReleaseLog, ReleaseRecords
from data_builders.sheets import whole_number
from mer_jax.errors import UserError

# Frame folders of a CASME II release by release variant: "raw" frames are aligned by
# our own face stage (one transform per clip, from the onset); the official crops are
# only resized.
CASME2_FRAME_FOLDERS = {
    "raw": ("CASME2_RAW_selected",),
    "cropped": ("Cropped", "Cropped-updated"),
}
CASME2_LAYOUT = (
    "expected layout: <root>/CASME2-coding-<date>.xlsx and frames in "
    "<root>/CASME2_RAW_selected/sub01/EP02_01f/img46.jpg (or <root>/Cropped/ or "
    "<root>/Cropped-updated/ with reg_img46.jpg)"
)


def casme2_subject_folder(subject: str) -> str:
    """The CASME II subject folder of a Subject cell: 1, "1.0", "sub1", "Sub01" -> "sub01".

    Raises:
        UserError: neither a number nor like "sub01".
    """
    number = whole_number(subject)
    match = re.fullmatch(r"sub\s*(\d+)", subject.strip(), re.IGNORECASE)
    if number is None and match is None:
        raise UserError(f"Subject {subject!r} is neither a number nor like 'sub01'")
    return f"sub{number if number is not None else int(match.group(1)):02d}"


def casme2_frames(root: Path, layout: str, log: ReleaseLog, *, release: str | None) -> Frames:
    """The frame folder of a CASME II release: of `release` ("raw" or "cropped"), or the
    first present, raw first.

    Raises:
        UserError: an unknown release, or no frame folder (the message shows `layout`).
    """
    del log
    variants = [release] if release is not None else list(CASME2_FRAME_FOLDERS)
    if release is not None and release not in CASME2_FRAME_FOLDERS:
        raise UserError(f"CASME II release {release!r} is not one of {list(CASME2_FRAME_FOLDERS)}")
    for variant in variants:
        for name in CASME2_FRAME_FOLDERS[variant]:
            if (root / name).is_dir():
                return Frames(root / name, face_cropped=variant == "cropped")
    wanted = " or ".join(name for variant in variants for name in CASME2_FRAME_FOLDERS[variant])
    raise UserError(f"{root} has no frame folder {wanted}; {layout}")


def read_casme2_release(
    root: str | Path,
    *,
    dataset: str = "casme2",
    fps: float = 200.0,
    release: str | None = None,
    errata: Sequence[Erratum] | None = None,
    annotation: Path | None = None,
) -> ReleaseRecords:
    """Reads the clips of a CASME II-layout directory, in coding-sheet order.

    Args:
        root: the release directory (see the module docstring for its layout).
        dataset: database name used in `ClipRecord.dataset` and the subject namespace
            (another database in CASME II layout, e.g. "synthetic_me", passes its own).
        fps: frame rate of the recordings (CASME II: 200).
        release: "raw" or "cropped" frames; None takes the first present, raw first.
        errata: corrections to apply; default: the shipped table of `dataset`.
        annotation: the coding sheet to read; None: found in root by `find_annotation`.

    Raises:
        UserError: no coding sheet, several, or no frame folder (the message shows the
            expected layout). Problems of single rows are notes of the release.
    """
    reader = SheetReader(
        dataset=dataset,
        fps=fps,
        sheet="CASME2-coding-*.xlsx",
        sheet_depth=0,
        layout=CASME2_LAYOUT,
        subject_folder=casme2_subject_folder,
        frames=functools.partial(casme2_frames, release=release),
    )
    return reader(root, errata=errata, annotation=annotation)


def read_casme2(
    root: str | Path, *, dataset: str = "casme2", fps: float = 200.0
) -> list[ClipRecord]:
    """The clips of a CASME II-layout directory, failing on any row that cannot be used.

    For generated databases (synthetic_me), where a skipped row is a bug; licensed
    releases go through `read_casme2_release`, which skips and reports such rows.

    Raises:
        UserError: as `read_casme2_release`, or rows that would be skipped (missing
            frames or folder, duplicate clip); the message names every one with its sheet
            row.
    """
    return read_casme2_release(root, dataset=dataset, fps=fps).strict_records()


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
    DATASETS = ("casme2",)
    MANUAL_DOWNLOAD_INSTRUCTIONS = MANUAL_DOWNLOAD_INSTRUCTIONS

    def read_release(self, manual_dir: Path) -> ReleaseRecords:
        """The CASME II release in manual_dir (see MANUAL_DOWNLOAD_INSTRUCTIONS)."""
        return read_casme2_release(
            manual_dir,
            release=self.builder_config.release,
            errata=self.errata_for("casme2"),
            annotation=self.chosen_annotation(),
        )
