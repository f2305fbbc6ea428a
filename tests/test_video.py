"""The one video reader: frame rate from the container, the frames asked for, bounded
chunks, and one-line errors for files it cannot read (small videos written here)."""

from pathlib import Path

import cv2
import numpy as np
import pytest

from mer_jax.errors import UserError
from mer_jax.preprocess.video import (
    count_frames,
    frame_chunks,
    is_video,
    probe_video,
    read_frames,
)

NUM_FRAMES = 10
FPS = 25.0
SIZE = (32, 24)  # (width, height)


def frame(index: int) -> np.ndarray:
    """Frame `index` in BGR: its blue channel is 20 * index, green and red fixed."""
    image = np.zeros((SIZE[1], SIZE[0], 3), np.uint8)
    image[..., 0] = 20 * index
    image[..., 1] = 60
    image[..., 2] = 200
    return image


@pytest.fixture
def video(tmp_path: Path) -> Path:
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), FPS, SIZE)
    assert writer.isOpened()
    for index in range(NUM_FRAMES):
        writer.write(frame(index))
    writer.release()
    return path


def test_frame_rate_and_count_come_from_the_container(video):
    assert is_video(video)
    assert probe_video(video, fallback_fps=200.0) == (FPS, NUM_FRAMES)
    assert probe_video(video, fallback_fps=None) == (FPS, NUM_FRAMES)
    assert count_frames(video) == NUM_FRAMES


def test_only_the_frames_asked_for_are_kept_in_either_channel_order(video):
    frames, count = read_frames(video, {1, 7}, color="bgr")
    assert sorted(frames) == [1, 7] and count == NUM_FRAMES
    for index, image in frames.items():
        assert image.shape == (SIZE[1], SIZE[0], 3)
        np.testing.assert_allclose(image.mean((0, 1)), frame(index).mean((0, 1)), atol=6)
    rgb, _ = read_frames(video, {7})
    np.testing.assert_array_equal(rgb[7], frames[7][..., ::-1])


def test_decoding_stops_at_until_and_keeps_each_frame_transformed(video):
    frames, count = read_frames(
        video, {0, 2, 8}, until=3, transform=lambda index, image: (index, image.shape)
    )
    assert count == 4  # frames 0..3 decoded, 8 never reached
    assert frames == {0: (0, (24, 32, 3)), 2: (2, (24, 32, 3))}


def test_a_video_in_bounded_chunks(video):
    chunks = list(frame_chunks(video, 4))
    assert [chunk.numbers.tolist() for chunk in chunks] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert chunks[0].images.shape == (4, SIZE[1], SIZE[0], 3)
    assert chunks[0].images.dtype == np.uint8 and chunks[0].landmarks is None
    # RGB by default: blue (20 * index) is the last channel.
    np.testing.assert_allclose(chunks[2].images[1, ..., 2].mean(), 20 * 9, atol=6)
    # Every third frame only, still at most 2 a chunk.
    sampled = list(frame_chunks(video, 2, step=3))
    assert [chunk.numbers.tolist() for chunk in sampled] == [[0, 3], [6, 9]]
    np.testing.assert_allclose(sampled[1].images[0, ..., 2].mean(), 20 * 6, atol=6)


def test_a_frame_folder_in_chunks_numbered_by_file_name(tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    for number in (46, 47, 49):
        cv2.imwrite(str(folder / f"img{number}.png"), frame(number - 45))
    (folder / "notes.txt").write_text("not a frame")
    chunks = list(frame_chunks(folder, 2, color="bgr"))
    assert [chunk.numbers.tolist() for chunk in chunks] == [[46, 47], [49]]
    np.testing.assert_array_equal(chunks[1].images[0], frame(4))


@pytest.mark.parametrize(
    "content, fragment",
    [
        (b"", "cannot open video"),
        (b"this is no video at all\n" * 20, "cannot open video"),
        ("truncated", "cannot"),
    ],
)
def test_an_unreadable_file_is_one_line_naming_it(video, tmp_path, content, fragment):
    bad = tmp_path / "bad.avi"
    bad.write_bytes(video.read_bytes()[:300] if content == "truncated" else content)
    for read in (
        lambda: probe_video(bad, 30.0),
        lambda: read_frames(bad, {0}),
        lambda: count_frames(bad),
        lambda: list(frame_chunks(bad, 4)),
    ):
        with pytest.raises(UserError, match=fragment) as error:
            read()
        assert str(bad) in str(error.value) and "\n" not in str(error.value)
        assert "ffmpeg" in str(error.value)


def test_neither_a_video_nor_a_frame_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    for source in (tmp_path / "empty", tmp_path / "notes.txt"):
        with pytest.raises(UserError, match="neither a video"):
            list(frame_chunks(source, 4))
    with pytest.raises(ValueError, match="at least 1"):
        list(frame_chunks(tmp_path, 0))
    with pytest.raises(ValueError, match="at least 1"):
        list(frame_chunks(tmp_path, 2, step=0))
