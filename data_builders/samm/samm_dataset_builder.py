"""TFDS builder of SAMM: 159 grayscale clips of 29 subjects at 200 fps, from the user's release.

SAMM quirks handled here and in `data_builders.reading`: about 13 rows of text above
the header of the coding sheet; Subject written as a bare integer (6) for the folder
006; frame files `006_05562.jpg` with 4 or 5 digit numbers; grayscale frames (replicated
to 3 channels by the face stage); apex frames outside onset..offset in a few rows of
the circulated sheet (treated as not annotated, reported).
"""

from data_builders.clip_builder import ClipBuilderConfig, SheetReleaseBuilder
from data_builders.reading import SheetReader, frame_folder
from data_builders.sheets import whole_number
from mer_jax.errors import UserError

DATASET = "samm"
FPS = 200.0
SAMM_LAYOUT = (
    "expected layout: <root>/SAMM_Micro_FACS_Codes_v2.xlsx (any version of the coding "
    "sheet) and frames in <root>/SAMM/006/006_1_2/006_05562.jpg"
)
MANUAL_DOWNLOAD_INSTRUCTIONS = f"""\
SAMM is licence-gated. Request it from Manchester Metropolitan University (the SAMM
page of Moi Hoon Yap's group, https://helward.mmu.ac.uk/STAFF/M.Yap/dataset.php, licence
agreement signed), unpack it into one folder and pass that folder as manual_dir.
{SAMM_LAYOUT}.
Optional landmarks sidecars: <root>/landmarks/006/006_1_2.csv.
"""


def samm_subject_folder(subject: str) -> str:
    """The SAMM subject folder of a Subject cell: 6, "6.0", "006" -> "006".

    Raises:
        UserError: the cell is not a whole number.
    """
    number = whole_number(subject)
    if number is None:
        raise UserError(f"SAMM Subject {subject!r} is not a number like 6 or 006")
    return f"{number:03d}"


# The clips of a SAMM release, in coding-sheet order (raises UserError for no coding
# sheet, several, or no SAMM/ frame folder).
read_samm = SheetReader(
    dataset=DATASET,
    fps=FPS,
    sheet="SAMM_Micro_FACS_Codes*.xlsx",
    sheet_depth=1,
    layout=SAMM_LAYOUT,
    subject_folder=samm_subject_folder,
    frames=frame_folder("SAMM"),
)


class Builder(SheetReleaseBuilder):
    """samm: one "train" split, labels of the samm_5class protocol."""

    BUILDER_CONFIGS = [ClipBuilderConfig(name="default", description="SAMM frames, dlib faces")]
    PROTOCOL = "samm_5class"
    READER = read_samm
    MANUAL_DOWNLOAD_INSTRUCTIONS = MANUAL_DOWNLOAD_INSTRUCTIONS
