"""TFDS builder of `ckplus`: the Extended Cohn-Kanade (CK+) sequences as frame pairs.

CK+ (593 posed sequences of 123 subjects) in its released layout:

    <root>/cohn-kanade-images/S005/001/S005_001_00000001.png ...   the frames
    <root>/Landmarks/S005/001/S005_001_00000001_landmarks.txt      optional: 68 lines
                                                                   "x y" per frame

Each sequence goes from neutral to the expression's peak and is used whole; its
first frame aligns it, with the landmarks file of that frame when the release's
Landmarks/ folder has it, else dlib. Frames may be grayscale or colour (grayscale
is replicated to 3 channels); frames are ordered by the number in their name, and
other files (.DS_Store, thumbnails) are ignored. The emotion and FACS labels are not
read. The folders may sit one or two levels below manual_dir (the zips unpack to
`cohn-kanade-images/` and `Landmarks/`).

fps: CK+ does not state a frame rate in its files; we take 30 fps (the recordings
were made on NTSC video), which with k_at_30fps=2 gives k=2.

Subjects are namespaced `ckplus/S005`: CK+ is not a downstream MER test database,
so its people never meet the leakage guard's test subjects.
"""

import os
import re
from pathlib import Path

from data_builders.macro_pairs import MacroPairsConfig, MacroReleaseBuilder
from data_builders.reading import child_dir, list_frames
from data_builders.records import LANDMARKS_POINTS, MacroClip, MacroRelease, ReleaseLog
from mer_jax.errors import UserError

DATASET = "ckplus"
FPS = 30.0
IMAGES_DIR = "cohn-kanade-images"
LANDMARKS_DIR = "Landmarks"
CKPLUS_LAYOUT = (
    "expected layout: <root>/cohn-kanade-images/S005/001/S005_001_00000001.png (subject "
    "folders S###, sequence folders ###), optionally <root>/Landmarks/S005/001/"
    "S005_001_00000001_landmarks.txt"
)
MANUAL_DOWNLOAD_INSTRUCTIONS = f"""\
CK+ is licence-gated. Request it from the University of Pittsburgh (the CK+ page of
Jeffrey Cohn's Affect Analysis Group, https://www.jeffcohn.net/Resources/, agreement
signed), unpack extended-cohn-kanade-images.zip (and Landmarks.zip if you have it) into
one folder and pass that folder as manual_dir.
{CKPLUS_LAYOUT}.
"""
_SUBJECT = re.compile(r"S\d+", re.IGNORECASE)
# How deep below manual_dir the cohn-kanade-images folder may sit.
_DEPTH = 2


def _find_dir(root: Path, name: str) -> Path | None:
    """The folder `name` (any case) in root or up to _DEPTH levels below."""
    for folder, subfolders, _ in os.walk(root):
        level = len(Path(folder).relative_to(root).parts)
        found = child_dir(Path(folder), name)
        if found is not None:
            return found
        if level + 1 >= _DEPTH:
            subfolders.clear()
    return None


def read_ckplus(root: str | Path) -> MacroRelease:
    """Every sequence of a CK+ release, sorted by subject and sequence.

    Raises:
        UserError: no cohn-kanade-images folder, or no sequence in it (the message shows
            the expected layout).
    """
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"CK+ folder {root} does not exist; {CKPLUS_LAYOUT}")
    images = _find_dir(root, IMAGES_DIR)
    if images is None:
        raise UserError(f"{root} holds no {IMAGES_DIR}/ folder; {CKPLUS_LAYOUT}")
    landmarks_root = child_dir(images.parent, LANDMARKS_DIR) or _find_dir(root, LANDMARKS_DIR)
    log = ReleaseLog()
    clips = []
    for subject_dir in sorted(path for path in images.iterdir() if path.is_dir()):
        if not _SUBJECT.fullmatch(subject_dir.name):
            log.add("skipped", str(subject_dir), "", "not a subject folder like S005")
            continue
        subject = subject_dir.name.upper()
        for sequence_dir in sorted(path for path in subject_dir.iterdir() if path.is_dir()):
            frames = list_frames(sequence_dir)
            clip = f"{subject}/{sequence_dir.name}"
            if not frames:
                log.add("skipped", str(sequence_dir), clip, "no frame images")
                continue
            numbers = tuple(sorted(frames))
            first = frames[numbers[0]]
            location = None
            landmarks = None
            if landmarks_root is not None:
                location = (
                    landmarks_root
                    / subject_dir.name
                    / sequence_dir.name
                    / f"{first.stem}_landmarks.txt"
                )
                landmarks = location if location.is_file() else None
            gaps = numbers[-1] - numbers[0] + 1 - len(numbers)
            if gaps:
                log.add("gap", str(sequence_dir), clip, f"{gaps} frame(s) missing in the sequence")
            clips.append(
                MacroClip(
                    dataset=DATASET,
                    subject=f"{DATASET}/{subject}",
                    clip=sequence_dir.name,
                    fps=FPS,
                    frame_numbers=numbers,
                    frame_paths=tuple(frames[number] for number in numbers),
                    landmarks_path=landmarks,
                    landmarks_format=LANDMARKS_POINTS,
                    where=str(sequence_dir),
                    landmarks_location=location,
                )
            )
    if not clips:
        raise UserError(f"{images} holds no sequence with frames; {CKPLUS_LAYOUT}")
    return MacroRelease(DATASET, images, tuple(clips), tuple(log.notes))


class Builder(MacroReleaseBuilder):
    """ckplus: one "train" split of frame pairs of every CK+ sequence."""

    BUILDER_CONFIGS = [MacroPairsConfig(name="default", description="whole sequences, 30 fps")]
    MANUAL_DOWNLOAD_INSTRUCTIONS = MANUAL_DOWNLOAD_INSTRUCTIONS
    IDENTITIES = "CK+ subject ids (ckplus/S005)"

    def read_release(self, manual_dir: Path) -> MacroRelease:
        """The CK+ release in manual_dir (see MANUAL_DOWNLOAD_INSTRUCTIONS)."""
        return read_ckplus(manual_dir)
