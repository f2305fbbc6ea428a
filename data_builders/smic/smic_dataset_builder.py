"""TFDS builder of SMIC-HS: 164 clips of 16 subjects at 100 fps, from the user's release.

SMIC has no coding sheet: the emotion comes from the folder (negative / positive /
surprise, abbreviated ne / po / sur in the clip name), onset and offset are the first
and last frame on disk and no apex is annotated (the middle frame stands in). Subjects
and clip names are zero-padded (folder s1, clip s1_ne_01 -> subject "s01", filename
"s01_ne_01"), the spelling of the MEGC 2019 composite list; that is our reading, the
folders themselves are read as they are.
"""

import re
from collections.abc import Sequence
from pathlib import Path

from data_builders.clip_builder import ReleaseBuilder, ReleaseVariantConfig
from data_builders.errata import Erratum
from data_builders.reading import ClipSource, FrameIndex, child_dir, join_release
from data_builders.records import ReleaseLog, ReleaseRecords
from data_builders.sheets import SheetRow
from mer_jax.errors import UserError

DATASET = "smic"
FPS = 100.0
SMIC_LAYOUT = (
    "expected layout: <root>/HS/s1/micro/negative/s1_ne_01/image017581039.bmp (raw) or "
    "<root>/SMIC_all_cropped/HS/s1/micro/negative/s1_ne_01/reg_image017581039.bmp (cropped)"
)
MANUAL_DOWNLOAD_INSTRUCTIONS = f"""\
SMIC is licence-gated. Request it from the Center for Machine Vision and Signal Analysis,
University of Oulu (the SMIC database page of the CMVS group, licence agreement signed),
unpack it into one folder and pass that folder as manual_dir. Only the high-speed (HS)
recordings are read.
{SMIC_LAYOUT}.
Config "raw" reads HS/, config "cropped" SMIC_all_cropped/HS/. Optional landmarks
sidecars mirror the clip folders below HS: <root>/landmarks/s1/micro/negative/s1_ne_01.csv.
"""
# Emotion folder -> its abbreviation in clip names.
_EMOTION_CODES = {"negative": "ne", "positive": "po", "surprise": "sur"}
_CLIP_NAME = re.compile(r"s(\d+)_(ne|po|sur)_(\d+)", re.IGNORECASE)
_SUBJECT_FOLDER = re.compile(r"s(\d+)", re.IGNORECASE)


def _hs_folder(root: Path, release: str) -> Path:
    if release == "raw":
        hs = child_dir(root, "HS")
    else:
        cropped = child_dir(root, "SMIC_all_cropped")
        hs = None if cropped is None else child_dir(cropped, "HS")
    if hs is None:
        wanted = "HS/" if release == "raw" else "SMIC_all_cropped/HS/"
        raise UserError(f"{root} has no {wanted} folder for release {release!r}; {SMIC_LAYOUT}")
    return hs


def read_smic(
    root: str | Path, *, release: str = "raw", errata: Sequence[Erratum] | None = None
) -> ReleaseRecords:
    """The clips of a SMIC-HS release, by subject and clip name.

    Folders that cannot be a clip are noted and skipped: a clip folder in another
    subject's or emotion's folder than its name says, a name that is no clip name, a
    folder without frames or with two files for one frame number.

    Args:
        root: the release folder.
        release: "raw" (HS/) or "cropped" (SMIC_all_cropped/HS/).
        errata: corrections (e.g. dropping a clip); None: the shipped table.

    Raises:
        UserError: no HS folder, or no clip folder at all (the message shows the layout).
    """
    root = Path(root)
    hs = _hs_folder(root, release)
    log = ReleaseLog()
    frame_index = FrameIndex()
    rows: list[SheetRow] = []
    clip_dirs: dict[tuple[str, str], Path] = {}
    subjects = [path for path in hs.iterdir() if _SUBJECT_FOLDER.fullmatch(path.name)]
    for subject_dir in sorted(subjects, key=lambda path: int(path.name[1:])):
        micro = child_dir(subject_dir, "micro")
        if micro is None:
            log.add("note", str(subject_dir.relative_to(root)), "", "no micro/ folder; skipped")
            continue
        subject = f"s{int(subject_dir.name[1:]):02d}"
        for emotion_dir in sorted(path for path in micro.iterdir() if path.is_dir()):
            emotion = emotion_dir.name.lower()
            if emotion not in _EMOTION_CODES:
                where = str(emotion_dir.relative_to(root))
                log.add("note", where, "", "not an emotion folder (negative/positive/surprise)")
                continue
            for clip_dir in sorted(path for path in emotion_dir.iterdir() if path.is_dir()):
                where = str(clip_dir.relative_to(root))
                match = _CLIP_NAME.fullmatch(clip_dir.name)
                if match is None:
                    log.add("skipped", where, "", "folder name is not a clip name like s1_ne_01")
                    continue
                number, code, index = match.groups()
                filename = f"s{int(number):02d}_{code.lower()}_{index}"
                clip = f"{subject}/{filename}"
                if code.lower() != _EMOTION_CODES[emotion] or int(number) != int(subject[1:]):
                    log.add(
                        "skipped",
                        where,
                        clip,
                        f"clip {clip_dir.name} does not belong in {subject_dir.name}/micro/"
                        f"{emotion_dir.name}; move it to the folder its name says",
                    )
                    continue
                try:
                    frames = frame_index.frames(clip_dir)
                except UserError as error:
                    log.add("skipped", where, clip, str(error))
                    continue
                if not frames:
                    log.add("skipped", where, clip, "no frame images in the folder")
                    continue
                clip_dirs[(subject, filename)] = clip_dir
                rows.append(
                    SheetRow(
                        where=where,
                        subject=subject,
                        filename=filename,
                        onset=str(min(frames)),
                        apex="",
                        offset=str(max(frames)),
                        action_units="",
                        emotion=emotion,
                    )
                )
    if not rows and not log.notes_of("skipped"):
        raise UserError(f"{hs} holds no clip folders; {SMIC_LAYOUT}")
    return join_release(
        rows,
        annotation=hs,
        source=ClipSource(DATASET, FPS, release == "cropped", hs, root / "landmarks"),
        clip_dir_of=lambda row: clip_dirs[(row.subject, row.filename)],
        errata=errata,
        log=log,
    )


class Builder(ReleaseBuilder):
    """smic: one "train" split, labels of the smic_3class protocol."""

    BUILDER_CONFIGS = [
        ReleaseVariantConfig(name="raw", release="raw", description="HS frames, dlib faces"),
        ReleaseVariantConfig(
            name="cropped", release="cropped", description="SMIC_all_cropped/HS crops"
        ),
    ]
    PROTOCOL = "smic_3class"
    DATASETS = (DATASET,)
    READS_ANNOTATION = False  # SMIC has no coding sheet
    MANUAL_DOWNLOAD_INSTRUCTIONS = MANUAL_DOWNLOAD_INSTRUCTIONS

    def read_release(self, manual_dir: Path) -> ReleaseRecords:
        """The SMIC-HS release in manual_dir (see MANUAL_DOWNLOAD_INSTRUCTIONS)."""
        return read_smic(
            manual_dir, release=self.builder_config.release, errata=self.errata_for(DATASET)
        )
