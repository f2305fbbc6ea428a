r"""Export a built clip dataset to the layouts other MER code reads.

    python -m data_builders.export megc2019 --manual_dir /data/MEGC2019 \
        --format ststnet --out exports/megc2019_ststnet
    python -m data_builders.export megc2019 --manual_dir /data/MEGC2019 \
        --format htnet --out exports/megc2019_htnet
    python -m data_builders.export casme2 --manual_dir ~/CASME2 --protocol casme2_5class \
        --format npz --out exports/casme2_npz

The dataset is chosen and built exactly as by `python -m data_builders.cli` (the same
flags: --manual_dir, --data_dir, --builder_config, --overrides.KEY=VALUE, --strict,
--errata, --annotation); a complete build in the cache is read, a missing one built
first. `--protocol` labels the clips (default: the build's own protocol); clips the
protocol excludes are left out. The export is written into a temporary folder beside
`--out` and renamed to it at the end, so `--out` either does not exist or is complete.

Formats (docs/datasets.md, "Using mer-jax preprocessing in other code"):

- `ststnet`: `norm_u_v_os/<subject>/{u_train,u_test}/<class>/<image>`, one folder per
  LOSO fold (the test subject's clips in u_test, every other subject's in u_train), as
  the official STSTNet code reads it (christy1206/STSTNet, main.py: `cv2.imread` of each
  image, fed as float 0..255 without rescaling).
- `htnet`: `combined_3_class2_for_optical_flow.csv` (dataset, sub, filename_o, label,
  apex, imagename, sub_filename) and under `datasets/`: `three_norm_u_v_os/` (the ststnet
  layout), `STSNet_whole_norm_u_v_os/<image>` (every clip once) and
  `combined_datasets_whole/<imagename>` (the aligned apex face), the names HTNet's
  main_HTNet.py reads (wangzhifengharrison/HTNet).
- `npz`: `arrays.npz` (flow, strain, onset_image, apex_image, label, in sample order)
  and `metadata.csv` (one row a sample: subject, clip, onset, apex, offset, emotion,
  label and class under the protocol), for any framework.

Each image is a 28 x 28 PNG of the clip's onset -> apex u, v and optical strain exactly
as our STSTNet reads them (`motion_input`: resized to 28, each channel min-max
normalised per clip), times 255 and truncated to 0..255 as the published preprocessing
scripts do (`astype(np.uint8)`). Channels: the PNG's red is u, green v, blue strain, so
`cv2.imread` returns [strain, v, u] (BGR), the order the STSTNet-derived code writes
(`final[..., 0] = strain  # B`, `[..., 1] = v`, `[..., 2] = u  # R`, then
`cv2.imwrite`) and its networks were trained on. Images are named
`<subject>_<clip> .png` (the space is the authors' inputs', which HTNet's CSV join
relies on). Every export also holds `export.json`: the build, protocol, classes and
this channel mapping.
"""

import argparse
import csv
import json
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

import cv2
import jax
import numpy as np

from data_builders.cli import add_build_arguments, build_as_asked, exit_status, parse_build_args
from data_builders.loading import dataset_from_build
from mer_jax.data.dataset import MERDataset
from mer_jax.errors import UserError
from mer_jax.guards import staged_folder
from mer_jax.models.layers import motion_input

FORMATS = ("ststnet", "htnet", "npz")
# The official STSTNet input: 28 x 28 x 3.
STSTNET_SIZE = 28
# cv2.imread's channel order of the exported PNGs, and the maps they hold.
STSTNET_CHANNELS = ("strain", "v", "u")
HTNET_CSV = "combined_3_class2_for_optical_flow.csv"
HTNET_COLUMNS = ("dataset", "sub", "filename_o", "label", "apex", "imagename", "sub_filename")
METADATA_COLUMNS = (
    "index", "sample_id", "dataset", "subject", "clip", "onset", "apex", "offset", "emotion",
    "label", "class",
)  # fmt: skip
NPZ_ARRAYS = ("flow", "strain", "onset_image", "apex_image", "label")


def ststnet_images(flow: np.ndarray, strain: np.ndarray) -> np.ndarray:
    """(N, 28, 28, 3) uint8 images of the clips, as `cv2.imread` returns the exported PNGs:
    [strain, v, u] (BGR), 0..255.

    Args:
        flow: (N, S, S, 2) onset -> apex [u, v] of a build.
        strain: (N, S, S, 1) its optical strain.
    """
    maps = motion_input(
        {"flow": flow, "strain": strain},
        jax.random.key(0),  # unused: no flip
        size=STSTNET_SIZE,
        use_strain=True,
        hflip=False,
    )
    values = np.floor(np.asarray(maps, np.float64) * 255.0)
    return np.clip(values, 0, 255).astype(np.uint8)[..., ::-1]


def sample_names(dataset: MERDataset) -> tuple[list[str], list[str]]:
    """(subject folder, clip name) of every sample, as the exported layouts name them.

    The subject is the release's folder ("sub01", "006", "s01"), or dataset_folder where
    two databases share a folder name; the clip is its file name, with _onset appended
    where one video holds several clips.
    """
    subjects = [str(subject) for subject in dataset["subject"]]
    folders = {subject: subject.rsplit("/", 1)[-1] for subject in set(subjects)}
    if len(set(folders.values())) < len(folders):
        folders = {subject: subject.replace("/", "_") for subject in folders}
    names = [str(name) for name in dataset["filename"]]
    keys = [(subject, name) for subject, name in zip(subjects, names, strict=True)]
    repeated = {key for key, count in Counter(keys).items() if count > 1}
    clips = [
        f"{name}_{onset}" if key in repeated else name
        for key, name, onset in zip(keys, names, dataset["onset_index"], strict=True)
    ]
    return [folders[subject] for subject in subjects], clips


def image_name(subject: str, clip: str) -> str:
    """An exported image's file name (the space before .png is the authors' inputs')."""
    return f"{subject}_{clip} .png"


def _png(image: np.ndarray) -> bytes:
    ok, encoded = cv2.imencode(".png", image)
    if not ok:
        raise UserError(f"could not encode a {image.shape} image as PNG")
    return encoded.tobytes()


def _write_loso_folds(
    root: Path, dataset: MERDataset, subjects: list[str], files: list[str], pngs: list[bytes]
) -> None:
    """<root>/<subject>/{u_train,u_test}/<class>/<file> for every LOSO fold."""
    labels = [int(label) for label in dataset.labels]
    folds = sorted(set(subjects))
    for done, test_subject in enumerate(folds, start=1):
        for subject, file, png, label in zip(subjects, files, pngs, labels, strict=True):
            side = "u_test" if subject == test_subject else "u_train"
            folder = root / test_subject / side / str(label)
            folder.mkdir(parents=True, exist_ok=True)
            (folder / file).write_bytes(png)
        if done % 10 == 0 or done == len(folds):
            print(f"  {root.name}: {done}/{len(folds)} LOSO folds written", flush=True)


def _write_ststnet(out: Path, dataset: MERDataset) -> None:
    subjects, clips = sample_names(dataset)
    files = [image_name(s, c) for s, c in zip(subjects, clips, strict=True)]
    pngs = [_png(image) for image in ststnet_images(dataset["flow"], dataset["strain"])]
    _write_loso_folds(out / "norm_u_v_os", dataset, subjects, files, pngs)


def _write_htnet(out: Path, dataset: MERDataset) -> None:
    subjects, clips = sample_names(dataset)
    files = [image_name(s, c) for s, c in zip(subjects, clips, strict=True)]
    pngs = [_png(image) for image in ststnet_images(dataset["flow"], dataset["strain"])]
    datasets = out / "datasets"
    _write_loso_folds(datasets / "three_norm_u_v_os", dataset, subjects, files, pngs)
    whole = datasets / "STSNet_whole_norm_u_v_os"
    faces = datasets / "combined_datasets_whole"
    whole.mkdir(parents=True)
    faces.mkdir(parents=True)
    rows = []
    for index, (subject, clip, file, png) in enumerate(
        zip(subjects, clips, files, pngs, strict=True)
    ):
        (whole / file).write_bytes(png)
        face = f"{subject}_{clip}.png"
        # The aligned apex crop, RGB in the build: cv2 writes BGR arrays.
        (faces / face).write_bytes(_png(dataset["apex_image"][index][..., ::-1]))
        rows.append(
            {
                "dataset": str(dataset["dataset"][index]),
                "sub": subject,
                "filename_o": clip,
                "label": int(dataset.labels[index]),
                "apex": int(dataset["apex_index"][index]),
                "imagename": face,
                "sub_filename": f"{subject}_{clip}",
            }
        )
    _write_csv(out / HTNET_CSV, HTNET_COLUMNS, rows)


def _write_npz(out: Path, dataset: MERDataset) -> None:
    subjects, clips = sample_names(dataset)
    np.savez(out / "arrays.npz", **{name: dataset[name] for name in NPZ_ARRAYS})
    rows = [
        {
            "index": index,
            "sample_id": str(dataset["sample_id"][index]),
            "dataset": str(dataset["dataset"][index]),
            "subject": subjects[index],
            "clip": clips[index],
            "onset": int(dataset["onset_index"][index]),
            "apex": int(dataset["apex_index"][index]),
            "offset": int(dataset["offset_index"][index]),
            "emotion": str(dataset["emotion"][index]),
            "label": int(dataset.labels[index]),
            "class": dataset.class_names[int(dataset.labels[index])],
        }
        for index in range(dataset.num_samples)
    ]
    _write_csv(out / "metadata.csv", METADATA_COLUMNS, rows)


def _write_csv(path: Path, columns: Sequence[str], rows: list[dict]) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(columns))
        writer.writeheader()
        writer.writerows(rows)


_WRITERS: dict[str, Callable[[Path, MERDataset], None]] = {
    "ststnet": _write_ststnet,
    "htnet": _write_htnet,
    "npz": _write_npz,
}


def export(dataset: MERDataset, export_format: str, out: str | Path, source: str) -> Path:
    """Writes `dataset` in `export_format` to the folder `out`, all or nothing.

    Args:
        dataset: the clips to export (labels under the chosen protocol).
        export_format: one of FORMATS.
        out: a folder that does not exist yet (or is empty).
        source: the build it comes from, recorded in export.json.

    Raises:
        UserError: an unknown format, or `out` already holding something.
    """
    if export_format not in _WRITERS:
        raise UserError(f"unknown export format {export_format!r}; choose one of {FORMATS}")
    out = _check_new_folder(Path(out))
    with staged_folder(out) as partial:
        _WRITERS[export_format](partial, dataset)
        info = {
            "source": source,
            "format": export_format,
            "samples": dataset.num_samples,
            "class_names": list(dataset.class_names),
            "image_channels_as_read_by_cv2": list(STSTNET_CHANNELS),
            "image_values": "per clip and channel min-max to 0..255, truncated",
        }
        (partial / "export.json").write_text(json.dumps(info, indent=2) + "\n")
    return out


def _check_new_folder(out: Path) -> Path:
    """`out` made absolute, or an error when it already holds something."""
    out = out.expanduser().absolute()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserError(f"--out {out} already exists and is not empty; give a new folder")
    return out


def folder_bytes(path: Path) -> tuple[int, int]:
    """(files, bytes) under a folder."""
    sizes = [file.stat().st_size for file in path.rglob("*") if file.is_file()]
    return len(sizes), sum(sizes)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m data_builders.export",
        description="Export a built clip dataset to the STSTNet, HTNet or npz layout.",
        epilog="--overrides.KEY=VALUE: change a builder config field (as for data_builders.cli)",
    )
    add_build_arguments(parser)
    parser.add_argument("--format", required=True, choices=FORMATS, help="the layout to write")
    parser.add_argument("--out", required=True, type=Path, help="a new folder to write")
    parser.add_argument("--protocol", help="label protocol (default: the build's own)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the command; returns the exit status (2 for a problem with the input)."""
    return exit_status(lambda: _export_command(argv))


def _export_command(argv: Sequence[str] | None) -> None:
    args, variant = parse_build_args(_parser(), argv)
    _check_new_folder(args.out)  # before a build that may take long
    builder = build_as_asked(args, variant)
    dataset = dataset_from_build(builder, args.protocol)
    if not isinstance(dataset, MERDataset):
        raise UserError(f"{args.name} is a macro-expression pair corpus; export writes clips")
    start = time.perf_counter()
    out = export(dataset, args.format, args.out, f"{builder.name}/{builder.builder_config.name}")
    files, size = folder_bytes(out)
    print(
        f"exported {dataset.num_samples} clips ({', '.join(dataset.class_names)}) as "
        f"{args.format} to {out}: {files} files, {size / 2**20:.1f} MiB in "
        f"{time.perf_counter() - start:.2f} s"
    )

if __name__ == "__main__":
    sys.exit(main())
