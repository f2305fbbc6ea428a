"""synthetic_lv: synthetic_me's long recordings whole, as pooled motion at a stride."""


import numpy as np

import data_builders
from data_builders.long_video_builder import video_features
from data_builders.synthetic_lv import SyntheticLVConfig, recording_motion
from mer_jax.synthetic.recordings import all_recordings, plan_database

# One subject, one clip on average, 64 px frames: a recording in about a second.
TINY = {"num_subjects": 1, "clips_per_subject": 1, "frame_size": 64, "crop_size": 32, "grid": 4}


def test_build_holds_every_recording_with_its_intervals(tmp_path):
    builder = data_builders.build("synthetic_lv", data_dir=tmp_path, overrides=TINY, workers=1)
    config = builder.builder_config
    recordings = all_recordings(config.spec())
    examples = list(builder.as_data_source("train"))
    assert [e["video"] for e in examples] == [r.name.encode() for r in recordings]
    step, span = config.step_frames(), config.span
    assert step == 8 and builder.info.metadata["step_frames"] == 8
    # The one schema of every long-video build, so a reader never meets a missing key.
    assert builder.info.features.keys() == video_features(config.grid).keys()
    for example, recording in zip(examples, recordings, strict=True):
        numbers = np.arange(1, recording.num_frames + 1, step)
        np.testing.assert_array_equal(example["frame_numbers"], numbers)
        assert example["motion"].shape == (len(numbers) - span, 4, 4, 2)
        assert example["motion"].dtype == np.float16
        # The face never leaves a synthetic recording: no gap.
        assert example["valid"].shape == (len(numbers) - span,) and example["valid"].all()
        assert list(example["motion_notes"]) == []
        np.testing.assert_array_equal(example["onset"], [e.onset for e in recording.expressions])
        kinds = [k.decode() for k in example["interval_type"]]
        assert kinds == [e.kind for e in recording.expressions]
    # The micro intervals are synthetic_me's clips: one generator, one truth.
    clips = plan_database(config.spec())
    micro = sorted(
        (e["subject"].decode()[-5:], int(on), int(off))
        for e in examples
        for on, off, kind in zip(e["onset"], e["offset"], e["interval_type"], strict=True)
        if kind == b"micro"
    )
    assert micro == sorted((c.subject_dir, c.onset, c.offset) for c in clips)


def test_motion_shows_the_expressions_not_the_neutral_stretches():
    config = SyntheticLVConfig(name="still", **TINY)
    # No nuisance at all: what moves is the expressions.
    spec = config.spec().without_nuisance()
    recording = all_recordings(spec)[0]
    found = recording_motion(recording, spec, config)
    numbers = found["frame_numbers"][: len(found["motion"])]
    reach = numbers + config.span * config.step_frames()
    magnitude = np.abs(found["motion"].astype(np.float32)).max(axis=(1, 2, 3))
    during = np.zeros(len(numbers), bool)
    for expression in recording.expressions:
        during |= (reach >= expression.onset) & (numbers <= expression.offset)
    assert during.any() and (~during).any()
    assert magnitude[~during].max() < 0.02
    macro = [e for e in recording.expressions if e.kind == "macro"]
    assert macro and magnitude[during].max() > 0.1
