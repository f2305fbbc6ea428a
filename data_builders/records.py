"""The clips of a release as found on disk, before any pixel is read, and the releases.

A reader turns a release folder into a release: its clips and a note (`RowNote`) for
every row or folder it skipped or fixed, with the reason. Every clip is a `ClipOnDisk`
(its subject, frame files and landmarks file); two kinds derive from it:

- `ClipRecord`: a labelled micro-expression clip (onset, apex, offset, emotion, AUs),
  gathered in a `ReleaseRecords`; a clip builder makes one example of each.
- `MacroClip`: a span of frames, or a whole video, of a macro-expression corpus,
  gathered in a `MacroRelease`; a pair builder cuts frame pairs from each.
- `LongVideo`: a whole recording of a spotting database with its annotated `Interval`s
  (none for a recording nobody coded), gathered in a `VideoRelease`; a long-video
  builder stores its motion features and intervals as one example.

The rules that find them (coding sheets, frame folders, errata) are in
`data_builders.reading`; each database's own layout is read by the `read_*` function of
its builder package (`data_builders/<name>/`).
"""

from dataclasses import dataclass, field, fields
from pathlib import Path

from mer_jax.errors import UserError
from mer_jax.preprocess import ClipFrames

# Landmark file formats of `ClipOnDisk.landmarks_path`.
LANDMARKS_CSV = "csv"  # the sidecar: frame,x_0..x_67,y_0..y_67, rows by frame number
LANDMARKS_POINTS = "points"  # 68 "x y" lines of one frame (CK+'s _landmarks.txt)


@dataclass(frozen=True, kw_only=True)
class ClipOnDisk:
    """What every clip read from a release has: whose it is, its frames and landmarks.

    Attributes:
        dataset: database name, e.g. "casme2" (the `dataset` feature).
        subject: namespaced subject, "<namespace>/<subject folder>", e.g. "casme2/sub01",
            so subjects of different databases never merge in a LOSO split.
        fps: frame rate of the recording.
        frame_numbers: the original frame numbers present on disk, ascending (the
            integers in the file names; for a video 0..count-1 as its container
            reports it, empty when it does not say).
        frame_paths: the image files of `frame_numbers`, in the same order; empty for a
            video.
        landmarks_path: the clip's landmarks file, if the release has one.
        landmarks_location: where a landmarks file of this clip would be read from
            (named when no face is found).
        where: where the clip is annotated or found, e.g. "CASME2-coding-x.xlsx row 5"
            or its folder, for messages.
    """

    dataset: str
    subject: str
    fps: float
    frame_numbers: tuple[int, ...]
    frame_paths: tuple[Path, ...] = ()
    landmarks_path: Path | None = None
    landmarks_location: Path | None = None
    where: str = ""

    @property
    def subject_folder(self) -> str:
        """The subject without the dataset namespace, e.g. "sub01"."""
        return self.subject.rsplit("/", 1)[-1]


@dataclass(frozen=True, kw_only=True)
class ClipRecord(ClipOnDisk):
    """One labelled micro-expression clip.

    Attributes (besides `ClipOnDisk`'s; `frame_numbers` are those in onset..offset):
        filename: the clip name of the coding sheet, e.g. "EP02_01f".
        onset, apex, offset: original frame numbers (the integers in the file names).
            `apex` is always a frame of the clip: where the sheet gives none it is the
            frame nearest the middle of onset..offset.
        apex_annotated: whether `apex` comes from the coding sheet.
        emotion: the emotion label as written in the sheet.
        action_units_raw: the AU string as written in the sheet.
        face_cropped: the frames are already face crops (alignment only resizes).
    """

    filename: str
    onset: int
    apex: int
    offset: int
    apex_annotated: bool
    emotion: str
    action_units_raw: str
    face_cropped: bool

    @property
    def sample_id(self) -> str:
        """Unique id: dataset/subject folder/filename/onset (a video may hold several clips)."""
        return f"{self.dataset}/{self.subject_folder}/{self.filename}/{self.onset}"

    def frames(self) -> ClipFrames:
        """The clip as `mer_jax.preprocess.clip_features` reads it."""
        return ClipFrames(
            name=self.sample_id,
            frame_numbers=self.frame_numbers,
            frame_paths=self.frame_paths,
            onset=self.onset,
            apex=self.apex,
            offset=self.offset,
            face_cropped=self.face_cropped,
            landmarks_path=self.landmarks_path,
        )

    def frame_path(self, frame_number: int) -> Path:
        """The file of an original frame number of this clip (KeyError if absent)."""
        return self.frames().frame_path(frame_number)


@dataclass(frozen=True, kw_only=True)
class MacroClip(ClipOnDisk):
    """One macro-expression clip to cut frame pairs from: image files, or a video file.

    Attributes (besides `ClipOnDisk`'s; casme3_macro keeps the micro builder's subject
    namespace, "casme3/spNO.1", so the two compare):
        clip: the clip's name, unique within its subject.
        video_path: the video file, or None for image files.
        landmarks_format: `LANDMARKS_CSV` (a sidecar, rows by frame number) or
            `LANDMARKS_POINTS` (68 "x y" lines of the first frame).
    """

    clip: str
    video_path: Path | None = None
    landmarks_format: str = LANDMARKS_CSV

    @property
    def clip_id(self) -> str:
        """dataset/subject folder/clip: the prefix of the clip's pair ids."""
        return f"{self.dataset}/{self.subject_folder}/{self.clip}"

    @property
    def source(self) -> Path | None:
        """The video file or the folder of the frames."""
        if self.video_path is not None:
            return self.video_path
        return self.frame_paths[0].parent if self.frame_paths else None

    def frame_path(self, number: int) -> Path:
        """The image file of a frame number of this clip."""
        return self.frame_paths[self.frame_numbers.index(number)]


def clip_from_record(record: ClipRecord, *, dataset: str, clip: str) -> MacroClip:
    """The macro clip of a clip record (onset..offset of a sheet-annotated release): the
    fields every clip has, carried over, with its own dataset name and clip name."""
    on_disk = {item.name: getattr(record, item.name) for item in fields(ClipOnDisk)}
    return MacroClip(**{**on_disk, "dataset": dataset}, clip=clip)


@dataclass(frozen=True)
class Interval:
    """One annotated expression of a long video.

    Attributes:
        onset, apex, offset: original frame numbers; `apex` is the frame nearest the
            middle of onset..offset where the sheet gives none.
        apex_annotated: whether `apex` comes from the sheet.
        interval_type: "micro" or "macro", from the sheet's type column.
        emotion, action_units_raw: as written in the sheet ("" where it has none).
        where: its sheet row, for messages.
    """

    onset: int
    apex: int
    offset: int
    apex_annotated: bool
    interval_type: str
    emotion: str
    action_units_raw: str
    where: str


@dataclass(frozen=True, kw_only=True)
class LongVideo(ClipOnDisk):
    """One whole recording of a long-video (spotting) database and its intervals.

    Attributes (besides `ClipOnDisk`'s; `frame_numbers` are every frame on disk):
        video: its name, unique in the database: the frame folder below the frame root
            ("s15/15_0101disgustingteeth", "006_1", "spNO.1/a").
        intervals: the annotated expressions, by onset; empty for a video nobody coded
            (it still counts: every interval spotted in it is a false positive).
    """

    video: str
    intervals: tuple[Interval, ...] = ()


NOTE_KINDS = ("skipped", "fixed", "gap", "au", "note")


@dataclass(frozen=True)
class RowNote:
    """A row the reader skipped or changed, a clip with frames missing inside it, or
    anything else a user should see about a release.

    Attributes:
        kind: one of `NOTE_KINDS`: "skipped" (a clip row or folder that is not in the
            records; with `--strict` any makes the build fail), "fixed" (changed by an
            erratum or a rule), "gap" (kept; some frames inside onset..offset are not on
            disk), "au" (kept; its action-unit cell cannot be read, so its AU target is
            masked) or "note" (anything else: text rows, errata that matched nothing,
            a sheet found by its columns, merged cells).
        where: the sheet and row, or the clip folder of a database without a sheet.
        clip: "<subject>/<filename>" as the reader normalises them ("sub01/EP02_01f",
            "006/006_1_2", "s01/s01_ne_01"), or "" for a row without one.
        reason: what happened and why.
    """

    kind: str
    where: str
    clip: str
    reason: str

    def __str__(self) -> str:
        clip = f" clip {self.clip}" if self.clip else ""
        return f"{self.kind}: {self.where}{clip}: {self.reason}"


@dataclass
class ReleaseLog:
    """Collects the notes of one reading."""

    notes: list[RowNote] = field(default_factory=list)

    def add(self, kind: str, where: str, clip: str, reason: str) -> None:
        """Records one note (kinds: `data_builders.records.NOTE_KINDS`)."""
        self.notes.append(RowNote(kind, where, clip, reason))

    def notes_of(self, kind: str) -> list[RowNote]:
        """The notes of one kind so far."""
        return [note for note in self.notes if note.kind == kind]


@dataclass(frozen=True)
class ReleaseRecords:
    """What a reader found in a release: the clips and the notes on its rows.

    Attributes:
        dataset: database name ("megc2019" for the composite).
        annotation: the annotation file (or frame folder) the clips come from.
        records: the clips, in annotation order.
        notes: every row skipped or fixed, every clip with a frame gap or an unreadable
            AU cell, and other notes.
    """

    dataset: str
    annotation: Path
    records: tuple[ClipRecord, ...]
    notes: tuple[RowNote, ...] = ()

    def notes_of(self, kind: str) -> list[RowNote]:
        """The notes of one kind (see `NOTE_KINDS`)."""
        return [note for note in self.notes if note.kind == kind]

    def strict_records(self) -> list[ClipRecord]:
        """The records, or an error naming every skipped row (generated data must be whole).

        Raises:
            UserError: a row was skipped; see `check_strict`.
        """
        check_strict(self, "generated data must be whole")
        return list(self.records)


@dataclass(frozen=True)
class MacroRelease:
    """The clips a macro builder found, and notes on what it skipped.

    Attributes:
        dataset: the builder's dataset name.
        source: the folder (or annotation file) the clips come from.
        clips: the clips, in a stable order.
        notes: rows or folders skipped or noted, with the reason.
    """

    dataset: str
    source: Path
    clips: tuple[MacroClip, ...]
    notes: tuple[RowNote, ...] = ()

    def notes_of(self, kind: str) -> list[RowNote]:
        """The notes of one kind (see `NOTE_KINDS`)."""
        return [note for note in self.notes if note.kind == kind]


@dataclass(frozen=True)
class VideoRelease:
    """The long videos a long-video builder found, and the notes on the sheet's rows.

    Attributes:
        dataset: the builder's dataset name.
        annotation: the coding sheet the intervals come from.
        videos: every video folder with frames, annotated or not, by name.
        notes: rows skipped or fixed, videos with frames missing, other notes.
    """

    dataset: str
    annotation: Path
    videos: tuple[LongVideo, ...]
    notes: tuple[RowNote, ...] = ()

    def notes_of(self, kind: str) -> list[RowNote]:
        """The notes of one kind (see `NOTE_KINDS`)."""
        return [note for note in self.notes if note.kind == kind]


# What `data_builders.read_release` returns: the records of a clip dataset's release, the
# clips of a pair corpus read from a folder, or the videos of a long-video release.
Release = ReleaseRecords | MacroRelease | VideoRelease


# Why a strict build of a user's release fails, in its messages.
STRICT_RULE = (
    "a strict build (--strict, data.strict) accepts none: fix them in the release, correct "
    "them with errata (--errata, data.errata), or build without strict"
)


def check_strict(release: Release, rule: str = STRICT_RULE) -> None:
    """No row or folder of the release was skipped: what `--strict` (`data.strict`) asks.

    Args:
        release: what a reader found.
        rule: why nothing may be skipped, quoted in the message.

    Raises:
        UserError: some were skipped; the message names every one with its reason.
    """
    skipped = release.notes_of("skipped")
    if skipped:
        raise UserError(
            f"{len(skipped)} row(s) or clip(s) of {release.dataset} were skipped; {rule}:\n  "
            + "\n  ".join(str(note) for note in skipped)
        )
