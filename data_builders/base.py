"""What every builder shares, clip datasets and pair corpora alike.

- `map_clips`: the clip stage, one independent call per clip in worker processes; a clip
  that fails (no face found, unreadable frame) does not stop the others.
- `MERBuilder`: the base of every builder: its worker processes, how it reads a user's
  folder (`ReadOptions`: strict, errata, the chosen annotation) and what a build does
  with clips that failed (`settle_failures`): a build from a user's folder skips them,
  names them in the log and in the dataset's metadata ("skipped_clips") and writes the
  rest; a strict build (`--strict`, `data.strict`), a generated database (it must be
  whole) or a build in which every clip failed fails naming each one, and nothing of it
  reads as a complete build (TFDS's incomplete directory is removed).
- `ManualDirBuilder`: the builders whose raw data is a folder the user has (`manual_dir`:
  a licensed release, or a folder of videos); `checked_release` reads its annotation and
  lists its folders only, which is the dry run, and the build keeps the notes on its
  rows in the dataset's metadata ("release_notes").
"""

import abc
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import tensorflow_datasets as tfds
from tqdm.auto import tqdm

from data_builders.errata import Erratum, errata_for
from data_builders.records import STRICT_RULE, ClipOnDisk, Release, RowNote, check_strict
from mer_jax.errors import UserError
from mer_jax.workers import available_cores, worker_pool


def _caught[Result](
    function: Callable[..., Result], call: tuple[Any, ...]
) -> tuple[Result | None, UserError | None]:
    """`function(*call)`, with a UserError returned instead of raised (run in a worker)."""
    try:
        return function(*call), None
    except UserError as error:
        return None, error


def map_clips[Result](
    function: Callable[..., Result],
    calls: Sequence[tuple[Any, ...]],
    *,
    workers: int | None,
    desc: str,
    unit: str = "clip",
) -> Iterator[tuple[int, Result | None, UserError | None]]:
    """Runs `function(*call)` for every call, in worker processes, with a progress bar.

    The clip stage of every builder: one call per clip, each independent. A call that
    raises UserError (no face, unreadable frame) does not stop the others; it is yielded
    with its error so the caller can name every failed clip at the end.

    Args:
        function: a module-level function (it is pickled into spawned workers).
        calls: the positional arguments of each call.
        workers: processes (`mer_jax.workers.worker_pool`; None: all cores); never more
            than there are calls. With 1 everything runs in this process.
        desc, unit: the progress bar's label and unit.

    Yields:
        (index into calls, result or None, UserError or None), in the order of calls.
    """
    workers = max(1, min(workers or available_cores(), len(calls)))
    with tqdm(total=len(calls), desc=desc, unit=unit) as bar, worker_pool(workers) as pool:
        outcomes = pool.map(_caught, [function] * len(calls), calls)
        for index, (result, error) in enumerate(outcomes):
            bar.update()
            yield index, result, error


def clip_failure(clip: ClipOnDisk, clip_id: str, error: UserError) -> RowNote:
    """The note of a clip that could not be built (its annotation row or folder and the
    reason, with where a landmarks sidecar would go when no face was found); shown at once.
    """
    reason = str(error)
    if "no face found" in reason and clip.landmarks_path is None and clip.landmarks_location:
        reason += f" (a landmarks sidecar would be read from {clip.landmarks_location})"
    note = RowNote("skipped", clip.where or clip_id, clip_id, reason)
    tqdm.write(str(note))
    return note


def keep_release_notes(builder: tfds.core.DatasetBuilder, release: Release) -> None:
    """Shows the notes on a release's rows and keeps them in the build's metadata."""
    for note in release.notes:
        tqdm.write(f"{builder.name}: {note}")
    builder.info.metadata["release_notes"] = [str(note) for note in release.notes]


@dataclass(frozen=True)
class ReadOptions:
    """How a builder reads the folder a user has (see `data_builders.load`, the CLI).

    Attributes:
        strict: any row or clip skipped (while reading or building) fails the build.
        errata: the user's own corrections (`data_builders.errata.read_errata`), applied
            with the shipped table; a build with errata has its own cache entry.
        annotations: the annotation sheets the user chose (`--annotation`), where a
            release holds several candidates; PATH#SHEET names one sheet of a workbook.
    """

    strict: bool = False
    errata: tuple[Erratum, ...] = ()
    annotations: tuple[Path, ...] = ()


class MERBuilder(tfds.core.GeneratorBasedBuilder):
    """Base of every MER builder: workers, reading options and the failure policy."""

    def __init__(
        self, *, workers: int | None = None, reading: ReadOptions | None = None, **kwargs: Any
    ) -> None:
        """Creates the builder.

        Args:
            workers: processes computing clip features or pairs (default: all cores).
            reading: how a user's folder is read (default: not strict, no errata).
            **kwargs: `tfds.core.GeneratorBasedBuilder` arguments (data_dir, config,
                file_format).

        Raises:
            UserError: errata or a chosen annotation for a builder that reads none.
        """
        self._workers = workers
        self.reading = reading or ReadOptions()
        reads = self if isinstance(self, ManualDirBuilder) else None
        if self.reading.errata and not (reads and reads.APPLIES_ERRATA):
            raise UserError(
                f"dataset {self.name} applies no errata: they correct the coding sheets of "
                "the licensed micro-expression databases"
            )
        if self.reading.annotations and not (reads and reads.READS_ANNOTATION):
            raise UserError(f"dataset {self.name} reads no annotation sheet to choose")
        super().__init__(**kwargs)

    @property
    def strict(self) -> bool:
        """Whether a skipped row or clip fails the build: asked for, or a generated
        database (which must be whole)."""
        return self.reading.strict or not isinstance(self, ManualDirBuilder)

    def settle_failures(
        self, failures: Sequence[RowNote], num_clips: int, unit: str = "clips"
    ) -> None:
        """Fails the build for clips (or videos: `unit`) that failed (see the module
        docstring), or keeps them in the metadata ("skipped_clips"), after every one was
        tried.

        Raises:
            UserError: strict, generated, or every clip failed; names them all.
        """
        if not failures:
            return
        if self.strict or len(failures) == num_clips:
            # Raising leaves the build in TFDS's incomplete directory, which is removed:
            # nothing of it reads as a finished dataset.
            rule = STRICT_RULE if self.reading.strict else "nothing was written"
            raise UserError(
                f"{self.name}: {len(failures)} of {num_clips} {unit} could not be built; "
                f"{rule}. Fix or remove them (or add a landmarks sidecar where no face was "
                "found) and build again:\n  " + "\n  ".join(sorted(map(str, failures)))
            )
        self.info.metadata["skipped_clips"] = sorted(
            [*self.info.metadata.get("skipped_clips", []), *map(str, failures)]
        )


class ManualDirBuilder(abc.ABC):
    """Mixin of the builders read from a folder the user has (`manual_dir`).

    A subclass sets `MANUAL_DOWNLOAD_INSTRUCTIONS` (where the licence is requested,
    which layout is expected) and implements `read_release`, which only reads the
    annotation and lists folders (videos: their container header and first frame), so
    the dry run (`python -m data_builders.cli NAME --dry_run`) calls it without building.
    """

    name: ClassVar[str]
    reading: ReadOptions
    MANUAL_DOWNLOAD_INSTRUCTIONS: ClassVar[str]
    # What manual_dir holds, in messages: "its licensed release", "a folder".
    MANUAL_DIR_HOLDS: ClassVar[str]
    # Whether the reader applies errata / reads an annotation sheet one may choose.
    APPLIES_ERRATA: ClassVar[bool] = False
    READS_ANNOTATION: ClassVar[bool] = False
    # The databases the reader reads: errata naming another one are noted, not applied.
    DATASETS: ClassVar[tuple[str, ...]] = ()

    @abc.abstractmethod
    def read_release(self, manual_dir: Path) -> Release:
        """The clips in `manual_dir` and the notes on its rows or folders.

        Raises:
            UserError: a missing annotation, a wrong layout (the message shows the
                expected one) or an unreadable video (named). Problems of single rows
                are notes, never errors.
        """

    def checked_release(self, manual_dir: Path) -> Release:
        """`read_release` and the checks a builder adds to it: the dry run's release."""
        return self.read_release(manual_dir)

    def errata_for(self, dataset: str) -> tuple[Erratum, ...]:
        """The shipped errata of `dataset` and the user's about it."""
        return errata_for(dataset, self.reading.errata)

    def foreign_errata_notes(self) -> tuple[RowNote, ...]:
        """A note for each of the user's errata about a database this builder does not
        read (`DATASETS`): not applied, and said so."""
        return tuple(
            RowNote(
                "note",
                erratum.source,
                f"{erratum.subject}/{erratum.filename}",
                f"erratum about {erratum.dataset}, not read by {self.name} "
                f"({', '.join(self.DATASETS)}): not applied",
            )
            for erratum in self.reading.errata
            if erratum.dataset not in (None, *self.DATASETS)
        )

    def chosen_annotation(self) -> Path | None:
        """The annotation the user chose for a single-sheet reader, if any.

        Raises:
            UserError: several were given.
        """
        chosen = self.reading.annotations
        if len(chosen) > 1:
            raise UserError(
                f"dataset {self.name} reads one annotation sheet; {len(chosen)} were chosen"
            )
        return chosen[0] if chosen else None

    def _read_manual_dir(self, dl_manager: tfds.download.DownloadManager) -> Release:
        """`checked_release` of the build's manual_dir, or an error saying how to give one
        (or, strict, naming every skipped row)."""
        try:
            manual_dir = Path(dl_manager.manual_dir)
        except AssertionError:
            raise UserError(
                f"dataset {self.name} is built from {self.MANUAL_DIR_HOLDS}, which was not "
                "found: pass its folder as manual_dir (data_builders.build(..., "
                "manual_dir=DIR), --manual_dir DIR or --config.data.manual_dir=DIR).\n"
                f"{self.MANUAL_DOWNLOAD_INSTRUCTIONS}"
            ) from None
        release = self.checked_release(manual_dir)
        if self.reading.strict:
            check_strict(release)
        return release
