"""The records layer: each database's reader on a fake release in its real layout."""

import csv
import dataclasses
import shutil
from collections import Counter
from pathlib import Path

import fake_releases
import openpyxl
import pytest

from data_builders.casme2 import read_casme2, read_casme2_release
from data_builders.casme3 import read_casme3
from data_builders.errata import Erratum, errata_digest, read_errata
from data_builders.megc2019 import (
    COMPOSITE_LIST,
    composite_entries,
    read_megc2019,
    select_composite,
)
from data_builders.mmew import read_mmew
from data_builders.reading import check_usable
from data_builders.records import ClipRecord, ReleaseRecords
from data_builders.samm import read_samm
from data_builders.smic import read_smic
from mer_jax.data.protocols import get_protocol
from mer_jax.errors import UserError

READERS = {
    "casme2": (fake_releases.make_casme2, read_casme2_release, "casme2_5class"),
    "samm": (fake_releases.make_samm, read_samm, "samm_5class"),
    "smic": (fake_releases.make_smic, read_smic, "smic_3class"),
    "casme3": (fake_releases.make_casme3, read_casme3, "casme3_4class"),
    "mmew": (fake_releases.make_mmew, read_mmew, "mmew_4class"),
}


@pytest.fixture(scope="module")
def releases(tmp_path_factory) -> dict[str, tuple[Path, fake_releases.Expected]]:
    root = tmp_path_factory.mktemp("releases")
    return {name: (root / name, make(root / name)) for name, (make, _, _) in READERS.items()}


@pytest.mark.parametrize("name", list(READERS))
def test_reader_finds_the_clips_labels_and_notes(releases, name):
    root, expected = releases[name]
    _, read, protocol_name = READERS[name]
    release = read(root)
    assert len(release.records) == expected.samples
    assert {record.subject for record in release.records} == expected.subjects
    protocol = get_protocol(protocol_name)
    labels = {
        record.sample_id: -1
        if (label := protocol.label_of(name, record.emotion)) is None
        else label
        for record in release.records
    }
    assert labels == expected.labels
    counts = Counter(note.kind for note in release.notes)
    assert (counts["skipped"], counts["fixed"], counts["gap"]) == (
        expected.skipped,
        expected.fixed,
        expected.gaps,
    )
    for record in release.records:
        assert record.dataset == name and record.where
        assert record.frame_numbers[0] == record.onset and record.frame_numbers[-1] == record.offset
        assert record.frame_numbers == tuple(sorted(record.frame_numbers))
        assert record.onset <= record.apex <= record.offset and record.apex in record.frame_numbers
        assert all(path.is_file() for path in record.frame_paths)


def test_casme2_quirks(releases):
    root, _ = releases["casme2"]
    release = read_casme2_release(root)
    by_id = {record.sample_id: record for record in release.records}
    first = by_id["casme2/sub01/EP02_01f/46"]
    # Sorted by frame number (img46 .. img52), the .lnk and Thumbs.db ignored.
    assert [path.name for path in first.frame_paths] == [f"img{n}.jpg" for n in range(46, 53)]
    assert first.landmarks_path == root / "landmarks" / "sub01" / "EP02_01f.csv"
    assert first.fps == 200.0 and not first.face_cropped
    no_apex = by_id["casme2/sub01/EP03_02/8"]
    assert not no_apex.apex_annotated and no_apex.apex == 11  # middle of 8..14
    assert no_apex.action_units_raw == "12，14"
    padded = by_id["casme2/sub03/EP09_05/7"]  # "sub03" written as text, img007.jpg
    assert padded.frame_numbers == (7, 8, 9, 10, 11, 12)
    assert by_id["casme2/sub02/EP01_11f/100"].frame_numbers == (100, 101, 102, 103, 105, 106)
    (gap,) = release.notes_of("gap")
    assert gap.clip == "sub02/EP01_11f" and "104" in gap.reason
    (skipped,) = release.notes_of("skipped")
    assert skipped.where == "CASME2-coding-20190701.xlsx row 8"
    assert "[25] not found" in skipped.reason
    (footnote,) = release.notes_of("note")
    assert footnote.where == "CASME2-coding-20190701.xlsx row 9"
    assert "not a clip row" in footnote.reason and "coded by two coders" in footnote.reason

    cropped = read_casme2_release(root, release="cropped")
    assert all(record.face_cropped for record in cropped.records)
    assert cropped.records[0].frame_paths[0].name == "reg_img46.jpg"
    # Generated data must be whole: the strict reader fails on the skipped clip.
    with pytest.raises(
        UserError, match=r"generated data must be whole:\n  skipped: CASME2-coding-20190701.xlsx "
        r"row 8 clip sub03/EP13_01: annotated frame\(s\) \[25\]"
    ):
        read_casme2(root)


def test_samm_preamble_digits_and_apex_outside_the_clip(releases):
    root, _ = releases["samm"]
    release = read_samm(root)
    first, outside, _ = release.records
    assert first.subject == "samm/006" and first.frame_numbers == (5562, 5563, 5564, 5565)
    assert first.frame_paths[0].name == "006_05562.jpg"
    assert outside.frame_paths[0].name == "007_0990.jpg"
    assert not outside.apex_annotated and outside.apex == 991
    (fixed,) = release.notes_of("fixed")
    assert fixed.where == "SAMM_Micro_FACS_Codes_v2.xlsx row 16" and "apex 1200" in fixed.reason


def test_smic_labels_from_folders(releases):
    root, _ = releases["smic"]
    release = read_smic(root)
    negative = release.records[0]
    assert (negative.subject, negative.filename, negative.emotion) == (
        "smic/s01",
        "s01_ne_01",
        "negative",
    )
    assert negative.onset == 17581039 and negative.offset == 17581043
    assert not negative.apex_annotated and negative.fps == 100.0
    cropped = read_smic(root, release="cropped")
    assert cropped.records[0].frame_paths[0].name == "reg_image017581039.bmp"
    assert all(record.face_cropped for record in cropped.records)


def test_smic_clip_in_the_wrong_emotion_folder_is_skipped_by_name(tmp_path):
    fake_releases.write_clip(tmp_path / "HS/s3/micro/positive/s3_ne_02", [1, 2, 3], "image{}.bmp")
    release = read_smic(tmp_path)
    (note,) = release.notes_of("skipped")
    assert (note.where, note.clip) == ("HS/s3/micro/positive/s3_ne_02", "s03/s03_ne_02")
    assert "does not belong in s3/micro/positive" in note.reason
    with pytest.raises(UserError, match=r"gives no usable clip:\n  skipped: HS/s3/micro/pos"):
        check_usable(release)


def test_casme3_repeated_filenames_and_lost_frames(releases):
    root, _ = releases["casme3"]
    release = read_casme3(root)
    ids = [record.sample_id for record in release.records]
    assert ids == [
        "casme3/spNO.1/a/5",
        "casme3/spNO.1/a/20",
        "casme3/spNO.2/b/8",
        "casme3/spNO.2/c/3",
    ]
    task = release.records[1]
    assert 25 not in task.frame_numbers and len(task.frame_numbers) == 8
    assert task.landmarks_path == root / "landmarks" / "spNO.1" / "a" / "color.csv"
    reasons = [note.reason for note in release.notes_of("skipped")]
    assert "repeats" in reasons[0] and "[1, 2] not found" in reasons[1]


def test_mmew_emotion_keyed_folders(releases):
    root, _ = releases["mmew"]
    release = read_mmew(root)
    misfiled = release.records[2]
    assert misfiled.emotion == "surprise" and misfiled.frame_paths[0].parent.parent.name == "others"
    (note,) = release.notes_of("note")
    assert "filed under others/" in note.reason


def test_errata_fix_and_drop_rows_and_log_each(releases):
    root, _ = releases["casme2"]
    errata = [
        Erratum("sub01", "EP02_01f", "emotion", "disgust", "repression", "fixed by test"),
        Erratum("sub02", "EP05_02", "row", "", None, "unusable clip"),
        Erratum("sub01", "EP03_02", "offset", "99", "13", "already corrected release"),
        Erratum("sub09", "EP01_01", "apex", "1", "2", "not in this release"),
    ]
    release = read_casme2_release(root, errata=errata)
    by_id = {record.sample_id: record for record in release.records}
    assert by_id["casme2/sub01/EP02_01f/46"].emotion == "repression"
    assert "casme2/sub02/EP05_02/30" not in by_id
    assert by_id["casme2/sub01/EP03_02/8"].offset == 14  # its sheet holds 14, not 99
    notes = [str(note) for note in release.notes]
    assert any("erratum: emotion 'disgust' -> 'repression': fixed by test" in n for n in notes)
    assert any("row dropped: unusable clip" in n for n in notes)
    assert any("erratum not applied: offset is '14'" in n for n in notes)
    assert any("sub09/EP01_01" in n and "matched no row" in n for n in notes)


def test_missing_annotation_and_wrong_layout_are_named(tmp_path):
    with pytest.raises(
        UserError, match=r"holds no annotation sheet with the columns subject, filename, onset, "
        r"offset, emotion \(looked at: no .xlsx/.xls/.csv file\); expected layout"
    ):
        read_samm(tmp_path)
    fake_releases.write_sheet(tmp_path / "MMEW_Micro_Exp.xlsx", fake_releases.MMEW_HEADER, [])
    with pytest.raises(UserError, match="has no Micro_Expression/ folder; expected layout"):
        read_mmew(tmp_path)
    with pytest.raises(UserError, match=r"no casme2/, samm/, smic/ folder"):
        read_megc2019(tmp_path)


def test_onset_after_offset_skips_the_row_by_name(tmp_path):
    root = tmp_path / "samm"
    fake_releases.make_samm(root)
    sheet_path = root / "SAMM_Micro_FACS_Codes_v2.xlsx"
    workbook = openpyxl.load_workbook(sheet_path)
    workbook.active["F17"] = 2000  # Offset Frame of the third clip (onset 2030)
    workbook.save(sheet_path)
    release = read_samm(root)
    assert [record.filename for record in release.records] == ["006_1_2", "007_3_1"]
    (note,) = release.notes_of("skipped")
    assert (note.where, note.clip) == ("SAMM_Micro_FACS_Codes_v2.xlsx row 17", "011/011_2_3")
    assert note.reason.startswith("onset 2030 is after offset 2000")


def test_unreadable_action_units_keep_the_clip_and_name_the_row(tmp_path):
    rows = [[1, "EP01_01", 1, 2, 3, None, "4+smile", "happiness"]]
    fake_releases.write_sheet(tmp_path / "CASME2-coding-1.xlsx", fake_releases.CASME2_HEADER, rows)
    fake_releases.write_clip(tmp_path / "CASME2_RAW_selected/sub01/EP01_01", [1, 2, 3], "img{}.jpg")
    release = read_casme2_release(tmp_path)
    (record,) = release.records
    assert record.action_units_raw == "4+smile"
    (note,) = release.notes_of("au")
    assert (note.where, note.clip) == ("CASME2-coding-1.xlsx row 2", "sub01/EP01_01")
    assert "'4+smile' not read ('smile' is no AU)" in note.reason


# The MEGC 2019 composite -------------------------------------------------------------
EMOTION_OF_LABEL = {
    "casme2": ("disgust", "happiness", "surprise"),
    "samm": ("Anger", "Happiness", "Surprise"),
    "smic": ("negative", "positive", "surprise"),
}


def records_of_list(path: Path = COMPOSITE_LIST) -> dict[str, ReleaseRecords]:
    """Releases holding one record per entry of the official list (no files behind them),
    plus clips a release has that the list leaves out."""
    by_dataset: dict[str, list[ClipRecord]] = {"casme2": [], "samm": [], "smic": []}
    extra = [("casme2", "sub04", "EP12_01f", "disgust"), ("samm", "006", "006_9_9", "Other")]
    listed = [
        (e.dataset, e.subject, e.filename, EMOTION_OF_LABEL[e.dataset][e.label])
        for e in composite_entries(path)
    ]
    for dataset, subject, filename, emotion in listed + extra:
        by_dataset[dataset].append(
            ClipRecord(
                dataset=dataset,
                subject=f"{dataset}/{subject}",
                filename=filename,
                onset=1,
                apex=2,
                offset=3,
                apex_annotated=True,
                emotion=emotion,
                action_units_raw="",
                frame_numbers=(1, 2, 3),
                frame_paths=(Path("1.jpg"), Path("2.jpg"), Path("3.jpg")),
                fps=200.0,
                face_cropped=False,
                landmarks_path=None,
            )
        )
    return {d: ReleaseRecords(d, Path(d), tuple(rs)) for d, rs in by_dataset.items()}


def test_composite_is_exactly_the_official_list():
    composite = select_composite(records_of_list(), composite_entries())
    records = composite.records
    protocol = get_protocol("megc2019_3class")
    labels = Counter(protocol.label_of(r.dataset, r.emotion) for r in records)
    assert len(records) == 442 and [labels[0], labels[1], labels[2]] == [250, 109, 83]
    assert len({record.subject for record in records}) == 68
    per_dataset = Counter(record.dataset for record in records)
    assert per_dataset == {"casme2": 145, "samm": 133, "smic": 164}
    subjects = {d: len({r.subject for r in records if r.dataset == d}) for d in per_dataset}
    assert subjects == {"casme2": 24, "samm": 28, "smic": 16}
    assert "samm/006" in {record.subject for record in records}  # "6" in the list
    assert "casme2/sub04/EP12_01f/1" not in {record.sample_id for record in records}
    (note,) = composite.notes_of("note")
    assert "casme2 1, samm 1" in note.reason


def test_composite_names_missing_and_mislabelled_clips():
    releases = records_of_list()
    casme2 = releases["casme2"]
    kept = [r for r in casme2.records if (r.subject_folder, r.filename) != ("sub01", "EP02_01f")]
    relabelled = [
        dataclasses.replace(r, emotion="others") if r.filename == "EP19_05f" else r for r in kept
    ]
    releases["casme2"] = dataclasses.replace(casme2, records=tuple(relabelled))
    with pytest.raises(UserError) as error:
        select_composite(releases, composite_entries())
    message = str(error.value)
    assert "2 cannot be taken from the releases" in message
    assert (
        "casme2 sub01/EP02_01f (megc2019_composite_3class.csv line 2): not in the release"
        in message
    )
    assert (
        "sub01/EP19_05f (megc2019_composite_3class.csv line 3): listed as negative, but " in message
    )


# Finding and reading the annotation sheet --------------------------------------------
def test_two_candidate_sheets_are_listed_and_one_can_be_chosen(tmp_path):
    root = tmp_path / "mmew"
    fake_releases.make_mmew(root)
    copy = root / "old" / "MMEW labels (copy).csv"
    copy.parent.mkdir()
    with copy.open("w", newline="") as handle:
        csv.writer(handle).writerows(
            [fake_releases.MMEW_HEADER, [1, "S01_01", 3, 5, 8, "6+12", "happiness", ""]]
        )
    # Neither has the usual name: both are candidates by their columns.
    (root / "MMEW_Micro_Exp.xlsx").rename(root / "old" / "MMEW labels.xlsx")
    with pytest.raises(UserError) as error:
        read_mmew(root)
    message = str(error.value)
    assert "holds 2 annotation sheets with the columns" in message
    assert "old/MMEW labels (copy).csv, old/MMEW labels.xlsx" in message
    assert "--annotation PATH" in message
    chosen = read_mmew(root, annotation=copy)
    assert [record.filename for record in chosen.records] == ["S01_01"]
    assert chosen.annotation == copy


def test_a_sheet_of_a_workbook_is_chosen_and_the_others_are_refused(tmp_path):
    root = tmp_path / "casme2"
    fake_releases.make_casme2(root)
    sheet_path = root / "CASME2-coding-20190701.xlsx"
    workbook = openpyxl.load_workbook(sheet_path)
    workbook.copy_worksheet(workbook.active).title = "backup"
    workbook.save(sheet_path)
    with pytest.raises(UserError, match=r"2 annotation sheets.*20190701.xlsx \[Sheet\], "):
        read_casme2_release(root)
    release = read_casme2_release(root, annotation=Path(f"{sheet_path}#backup"))
    assert len(release.records) == 5
    assert release.records[0].where == "CASME2-coding-20190701.xlsx [backup] row 3"
    with pytest.raises(UserError, match="exactly one sheet with the columns"):
        read_casme2_release(root, annotation=sheet_path)


def test_old_excel_and_csv_sheets_are_read_like_xlsx(tmp_path):
    xlwt = pytest.importorskip("xlwt")  # writes the .xls; reading it needs xlrd
    root = tmp_path / "samm"
    fake_releases.make_samm(root)
    reference = read_samm(root)
    workbook = openpyxl.load_workbook(root / "SAMM_Micro_FACS_Codes_v2.xlsx")
    rows = [list(row) for row in workbook.active.iter_rows(values_only=True)]
    (root / "SAMM_Micro_FACS_Codes_v2.xlsx").unlink()
    old = xlwt.Workbook()
    sheet = old.add_sheet("FACS codes")
    for r, row in enumerate(rows):
        for c, value in enumerate(row):
            if value is not None:
                sheet.write(r, c, value)
    old.save(str(root / "SAMM codes.xls"))
    from_xls = read_samm(root)
    (root / "SAMM codes.xls").unlink()
    with (root / "samm codes.csv").open("w", newline="", encoding="utf-8-sig") as handle:
        csv.writer(handle, delimiter=";").writerows(rows)
    from_csv = read_samm(root)
    for release in (from_xls, from_csv):
        assert [r.sample_id for r in release.records] == [
            r.sample_id for r in reference.records
        ]
        assert [r.action_units_raw for r in release.records] == ["4+7", "R12+R14", "12A"]
        (found,) = [note for note in release.notes if "found by its columns" in note.reason]
        assert found.where in ("SAMM codes.xls", "samm codes.csv")


def test_merged_subject_cells_and_repeated_headers(tmp_path):
    root = tmp_path / "casme2"
    fake_releases.make_casme2(root)
    sheet_path = root / "CASME2-coding-20190701.xlsx"
    workbook = openpyxl.load_workbook(sheet_path)
    sheet = workbook.active
    sheet["A4"] = None  # EP03_02 of subject 1, as a cell merged with the row above
    sheet.merge_cells("A3:A4")
    sheet.insert_rows(6)
    for column, value in enumerate(fake_releases.CASME2_HEADER, start=1):
        sheet.cell(6, column, value)
    workbook.save(sheet_path)
    release = read_casme2_release(root)
    assert "casme2/sub01/EP03_02/8" in {record.sample_id for record in release.records}
    notes = {note.where: note.reason for note in release.notes_of("note")}
    assert "merged cells A3:A4" in notes["CASME2-coding-20190701.xlsx"]
    assert notes["CASME2-coding-20190701.xlsx row 6"] == "a repeated header row"


# A user's errata CSV --------------------------------------------------------------------
def test_errata_csv_is_read_and_its_bad_lines_are_named_at_once(tmp_path):
    path = tmp_path / "errata.csv"
    path.write_text(
        "Subject,Filename,Field,Wrong,Fixed,Reason\n"
        "sub01,EP02_01f,emotion,disgust,repression,coder's slip\n"
        "006,006_1_2,row,,,occluded\n"
    )
    fix, drop = read_errata(path)
    assert (fix.dataset, fix.field, fix.fixed, fix.source) == (
        None,
        "emotion",
        "repression",
        "errata.csv line 2",
    )
    assert (drop.field, drop.fixed) == ("row", None)
    path.write_text(
        "dataset,subject,filename,onset,field,wrong,fixed,reason\n"
        "casme2,sub01,EP02_01f,,colour,a,b,typo\n"
        "samm,006,006_1_2,,row,,x,drop\n"
        "samm,,006_1_3,,apex,1,2,\n"
    )
    with pytest.raises(UserError) as error:
        read_errata(path)
    lines = str(error.value).splitlines()[1:]
    assert [line.split(":")[0].strip() for line in lines] == [
        "errata.csv line 2",
        "errata.csv line 3",
        "errata.csv line 4",
    ]
    path.write_text("subject,clip,field,wrong,fixed,reason\n")
    with pytest.raises(UserError, match=r"missing \['filename'\], unknown \['clip'\]"):
        read_errata(path)
    errata = (fix, dataclasses.replace(fix, fixed="others"))
    assert errata_digest(errata[:1]) != errata_digest(errata)
    assert errata_digest(errata) == errata_digest(errata[::-1])


# The MEGC 2019 composite from fake releases --------------------------------------------
@pytest.fixture(scope="module")
def composite_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("megc") / "megc"
    fake_releases.make_megc2019(root, COMPOSITE_LIST)
    return root


def test_composite_lists_every_listed_clip_a_reader_skipped_with_its_reason(
    composite_root, tmp_path
):
    root = tmp_path / "megc"
    shutil.copytree(composite_root, root)
    shutil.rmtree(root / "casme2/CASME2_RAW_selected/sub01/EP02_01f")
    samm_sheet = root / "samm" / "SAMM_Micro_FACS_Codes_v2.xlsx"
    workbook = openpyxl.load_workbook(samm_sheet)
    workbook.active["F15"] = 0  # the first listed SAMM clip's offset
    workbook.save(samm_sheet)
    smic_clip = next((root / "smic/HS/s1/micro/negative").iterdir())
    shutil.rmtree(smic_clip)
    with pytest.raises(UserError) as error:
        read_megc2019(root)
    message = str(error.value)
    assert "3 cannot be taken from the releases" in message
    problems = message.split("\n  ")[1:]
    assert len(problems) == 3
    assert problems[0].startswith(
        "casme2 sub01/EP02_01f (megc2019_composite_3class.csv line 2): not in the release: "
        "skipped by the reader (CASME2-coding-20190701.xlsx row 2: frame folder "
    )
    # In list order: CASME II, SMIC, SAMM.
    assert problems[1].startswith("smic s01/s01_ne_") and "not in the release" in problems[1]
    assert problems[2].startswith("samm 006/") and "onset 11 is after offset 0" in problems[2]


def test_composite_names_every_part_it_cannot_read_and_routes_errata(composite_root, tmp_path):
    root = tmp_path / "megc"
    shutil.copytree(composite_root, root)
    (root / "casme2" / "CASME2-coding-20190701.xlsx").unlink()
    shutil.rmtree(root / "smic" / "HS")
    with pytest.raises(UserError) as error:
        read_megc2019(root)
    message = str(error.value)
    assert "2 cannot be read" in message
    assert "\n  casme2/: " in message and "holds no annotation sheet" in message
    assert "\n  smic/: " in message and "has no HS/ folder" in message
    erratum = Erratum("sub01", "EP02_01f", "emotion", "happiness", "surprise", "test")
    with pytest.raises(UserError, match="must name their database"):
        read_megc2019(composite_root, errata=[erratum])
    samm_sheet = composite_root / "samm" / "SAMM_Micro_FACS_Codes_v2.xlsx"
    chosen = read_megc2019(composite_root, annotations=[samm_sheet])
    assert len(chosen.records) == 442
    with pytest.raises(UserError, match="choose at most one sheet inside each of casme2/"):
        read_megc2019(composite_root, annotations=[tmp_path / "elsewhere.xlsx"])
    composite = read_megc2019(
        composite_root,
        errata=[
            Erratum("sub01", "EP19_05f", "emotion", "disgust", "repression", "t", dataset="casme2"),
            Erratum("s01", "s01_ne_01", "emotion", "negative", "x", "test", dataset="casme2"),
        ],
    )
    assert len(composite.records) == 442
    (fixed,) = composite.notes_of("fixed")
    assert fixed.where == "casme2: CASME2-coding-20190701.xlsx row 3"
    (unmatched,) = [note for note in composite.notes if "matched no row" in note.reason]
    assert unmatched.where.startswith("casme2: ") and unmatched.clip == "s01/s01_ne_01"
