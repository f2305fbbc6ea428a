"""TFDS builder of the MEGC 2019 composite database: 442 clips, 68 subjects, 3 classes.

The composite is exactly the official list shipped as
`data_builders/megc2019_composite_3class.csv` (dataset, subject, filename, label): CASME
II 145 clips (two disgust clips, sub04/EP12_01f and sub05/EP09_05f, are not in it),
SAMM 133, SMIC-HS 164; negative / positive / surprise 250 / 109 / 83. The clips are
taken from the records of the three databases' own readers, so every quirk, row rule
and erratum of those applies here too (a user's errata name the part in their `dataset`
column). A benchmark must be exact: a listed clip that a release lacks (with the reason
its reader gave), or whose emotion maps to another class than the list says, fails the
reading with every such entry named, and so does a part that cannot be read at all.
"""

import csv
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from data_builders.casme2 import casme2_subject_folder, read_casme2_release
from data_builders.clip_builder import ReleaseBuilder, ReleaseVariantConfig
from data_builders.errata import Erratum, errata_for
from data_builders.reading import child_dir
from data_builders.records import ClipRecord, ReleaseRecords, RowNote
from data_builders.samm import read_samm, samm_subject_folder
from data_builders.smic import read_smic
from mer_jax.data.protocols import get_protocol
from mer_jax.errors import UserError

DATASET = "megc2019"
PROTOCOL = "megc2019_3class"
COMPOSITE_LIST = Path(__file__).resolve().parents[1] / "megc2019_composite_3class.csv"
# Sub-folders of manual_dir, each laid out as for that database's own builder.
PARTS = ("casme2", "samm", "smic")
MANUAL_DOWNLOAD_INSTRUCTIONS = """\
The MEGC 2019 composite is assembled from three licence-gated databases; request each
as its own builder describes (CASME II: Chinese Academy of Sciences; SAMM: Manchester
Metropolitan University; SMIC: University of Oulu; see also
https://facial-micro-expressiongc.github.io/MEGC2019/). Pass as manual_dir a folder
holding one sub-folder per database, each laid out as for its own builder:
  <root>/casme2/CASME2-coding-<date>.xlsx, <root>/casme2/CASME2_RAW_selected/sub01/...
  <root>/samm/SAMM_Micro_FACS_Codes_v2.xlsx, <root>/samm/SAMM/006/006_1_2/...
  <root>/smic/HS/s1/micro/negative/s1_ne_01/...
(symbolic links to existing copies work). Config "raw" reads raw CASME II and SMIC frames,
"cropped" their official crops; SAMM has raw frames only.
"""


@dataclass(frozen=True)
class CompositeEntry:
    """One clip of the official list: subject as the database's folder ("006", "s01")."""

    dataset: str
    subject: str
    filename: str
    label: int
    where: str


def _list_subject(dataset: str, subject: str, where: str) -> str:
    # The list writes SAMM subjects as bare integers and CASME II ones as "sub01".
    folder_of = {"samm": samm_subject_folder, "casme2": casme2_subject_folder}.get(dataset)
    try:
        return subject if folder_of is None else folder_of(subject)
    except UserError as error:
        raise UserError(f"{where}: {error}") from None


def composite_entries(path: Path = COMPOSITE_LIST) -> list[CompositeEntry]:
    """The entries of the official composite list.

    Raises:
        UserError: a malformed line; the message names the file and line.
    """
    entries = []
    with path.open(newline="") as handle:
        for line_number, row in enumerate(csv.DictReader(handle), start=2):
            where = f"{path.name} line {line_number}"
            try:
                dataset, label = row["dataset"], int(row["label"])
                subject, filename = row["subject"].strip(), row["filename"].strip()
            except (KeyError, TypeError, ValueError):
                raise UserError(f"{where}: expected dataset,subject,filename,label") from None
            if dataset not in PARTS:
                raise UserError(f"{where}: dataset {dataset!r} is not one of {PARTS}")
            entries.append(
                CompositeEntry(
                    dataset, _list_subject(dataset, subject, where), filename, label, where
                )
            )
    return entries


def select_composite(
    releases: Mapping[str, ReleaseRecords],
    entries: Sequence[CompositeEntry],
    list_path: Path = COMPOSITE_LIST,
) -> ReleaseRecords:
    """The records of exactly the listed clips, in list order, with the parts' notes.

    Args:
        releases: database name -> its release records ("casme2", "samm", "smic").
        entries: the official list.
        list_path: named as the composite's annotation.

    Raises:
        UserError: a listed clip missing from its release (with the reasons the reader
            skipped it, if it did) or a clip whose emotion maps to another class than the
            list gives, or to none; every such entry is named.
    """
    protocol = get_protocol(PROTOCOL)
    by_key: dict[tuple[str, str, str], list[ClipRecord]] = {}
    for dataset, release in releases.items():
        for record in release.records:
            key = (dataset, record.subject_folder, record.filename.lower())
            by_key.setdefault(key, []).append(record)
    notes = [
        RowNote(note.kind, f"{dataset}: {note.where}", note.clip, note.reason)
        for dataset, release in releases.items()
        for note in release.notes
    ]
    problems, chosen = [], []
    for entry in entries:
        clip = f"{entry.dataset} {entry.subject}/{entry.filename} ({entry.where})"
        found = by_key.get((entry.dataset, entry.subject, entry.filename.lower()), [])
        if len(found) != 1:
            reasons = [
                f"{note.where}: {note.reason}"
                for note in releases[entry.dataset].notes_of("skipped")
                if note.clip.lower() == f"{entry.subject}/{entry.filename}".lower()
            ]
            why = f": skipped by the reader ({'; '.join(reasons)})" if reasons else ""
            state = "not in the release" if not found else f"{len(found)} clips in the release"
            problems.append(f"{clip}: {state}{why}")
            continue
        record = found[0]
        try:
            label = protocol.label_of(record.dataset, record.emotion)
        except UserError as error:
            problems.append(f"{clip}: {error}")
            continue
        if label != entry.label:
            names = protocol.class_names
            problems.append(
                f"{clip}: listed as {names[entry.label]}, but its emotion {record.emotion!r} "
                f"maps to {'no class' if label is None else names[label]}"
            )
            continue
        chosen.append(record)
    if problems:
        raise UserError(
            f"the MEGC 2019 composite must hold exactly the {len(entries)} clips of "
            f"{list_path.name}; {len(problems)} cannot be taken from the releases (correct "
            "the releases or add errata, --errata with a dataset column):\n  "
            + "\n  ".join(problems)
        )
    left_out = Counter(
        record.dataset for release in releases.values() for record in release.records
    ) - Counter(record.dataset for record in chosen)
    if left_out:
        counts = ", ".join(f"{dataset} {count}" for dataset, count in sorted(left_out.items()))
        notes.append(
            RowNote("note", list_path.name, "", f"clips of the releases not in the list: {counts}")
        )
    return ReleaseRecords(DATASET, list_path, tuple(chosen), tuple(notes))


def read_megc2019(
    root: str | Path,
    *,
    release: str = "raw",
    errata: Sequence[Erratum] = (),
    annotations: Sequence[Path] = (),
) -> ReleaseRecords:
    """The composite from a folder holding casme2/, samm/ and smic/ releases.

    Args:
        root: the folder of the three releases.
        release: "raw" or "cropped" CASME II and SMIC frames.
        errata: the user's corrections, each naming its part in `Erratum.dataset`; the
            shipped tables apply as well.
        annotations: the coding sheets chosen where a part holds several candidates,
            each inside its part's folder.

    Raises:
        UserError: a part folder missing (the message shows the layout), an erratum
            without its part, a chosen sheet in no part's folder, parts that cannot be
            read (every one named with its reader's error), or listed clips that cannot
            be taken (see `select_composite`).
    """
    root = Path(root)
    parts = {name: child_dir(root, name) for name in PARTS}
    missing = [name for name, path in parts.items() if path is None]
    if missing:
        raise UserError(
            f"{root} has no {', '.join(f'{name}/' for name in missing)} folder; the composite "
            "needs casme2/, samm/ and smic/ sub-folders, each laid out as for its own builder "
            "(see data_builders.megc2019.MANUAL_DOWNLOAD_INSTRUCTIONS)"
        )
    unrouted = [erratum.source or str(erratum) for erratum in errata if erratum.dataset is None]
    if unrouted:
        raise UserError(
            "errata for the MEGC 2019 composite must name their database (casme2, samm or "
            f"smic) in the dataset column: {', '.join(unrouted)}"
        )
    chosen: dict[str, Path] = {}
    for path in annotations:
        inside = [name for name, folder in parts.items() if _inside(path, folder)]
        part = inside[0] if inside else None
        if part is None or part in chosen:
            raise UserError(
                f"annotation {path}: for the composite, choose at most one sheet inside each "
                "of casme2/ and samm/"
            )
        chosen[part] = path
    readers = {
        "casme2": lambda: read_casme2_release(
            parts["casme2"],
            release=release,
            errata=errata_for("casme2", errata),
            annotation=chosen.get("casme2"),
        ),
        "samm": lambda: read_samm(
            parts["samm"], errata=errata_for("samm", errata), annotation=chosen.get("samm")
        ),
        "smic": lambda: read_smic(
            parts["smic"], release=release, errata=errata_for("smic", errata)
        ),
    }
    releases, failures = {}, []
    for name, read in readers.items():
        try:
            releases[name] = read()
        except UserError as error:
            failures.append(f"{name}/: {error}")
    if failures:
        raise UserError(
            f"the MEGC 2019 composite needs all of casme2/, samm/ and smic/; "
            f"{len(failures)} cannot be read:\n  " + "\n  ".join(failures)
        )
    return select_composite(releases, composite_entries())


def _inside(path: Path, folder: Path) -> bool:
    return path.expanduser().resolve().is_relative_to(folder.resolve())


class Builder(ReleaseBuilder):
    """megc2019: one "train" split of the 442 listed clips, labels of megc2019_3class."""

    BUILDER_CONFIGS = [
        ReleaseVariantConfig(name="raw", release="raw", description="raw frames, dlib faces"),
        ReleaseVariantConfig(
            name="cropped", release="cropped", description="official CASME II and SMIC crops"
        ),
    ]
    PROTOCOL = PROTOCOL
    DATASETS = PARTS
    MANUAL_DOWNLOAD_INSTRUCTIONS = MANUAL_DOWNLOAD_INSTRUCTIONS

    def read_release(self, manual_dir: Path) -> ReleaseRecords:
        """The composite from manual_dir (see MANUAL_DOWNLOAD_INSTRUCTIONS)."""
        return read_megc2019(
            manual_dir,
            release=self.builder_config.release,
            errata=self.reading.errata,
            annotations=self.reading.annotations,
        )
