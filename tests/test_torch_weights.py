"""The torch-free reader of PyTorch state dicts and the authors' STSTNet weights in ours.

The fixture under tests/data/official_ststnet/ was written once by torch
(scripts/make_official_ststnet_fixture.py): random weights of the authors' STSTNet module
in both torch.save layouts, a fixed uint8 input batch and the logits torch computed.
"""

import os
import pickle
import zipfile
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from mer_jax.errors import UserError
from mer_jax.models.ststnet import STSTNet, load_official_weights
from mer_jax.models.torch_weights import read_state_dict

FIXTURE = Path(__file__).resolve().parent / "data" / "official_ststnet"


@pytest.mark.parametrize("file", ["weights.pth", "weights_legacy.pth"])
def test_released_variant_reproduces_torch_logits_from_both_layouts(file):
    state = read_state_dict(FIXTURE / file)
    assert state["conv2.weight"].shape == (5, 3, 3, 3)
    assert state["fc.weight"].shape == (3, 400) and state["fc.weight"].dtype == np.float32
    assert state["bn1.num_batches_tracked"].dtype == np.int64
    model = STSTNet(3, variant="released", rngs=nnx.Rngs(0))
    load_official_weights(model, state)
    # As the official code feeds cv2.imread images: float 0..255, no rescaling.
    images = np.load(FIXTURE / "input.npy").astype(np.float32)
    logits = model({"motion": jnp.asarray(images)}, train=False)["logits"]
    np.testing.assert_allclose(np.asarray(logits), np.load(FIXTURE / "logits.npy"), atol=1e-5)


def test_both_layouts_hold_the_same_tensors():
    zipped = read_state_dict(FIXTURE / "weights.pth")
    legacy = read_state_dict(FIXTURE / "weights_legacy.pth")
    assert list(zipped) == list(legacy)
    for name in zipped:
        np.testing.assert_array_equal(zipped[name], legacy[name])


class _RunsCode:
    def __reduce__(self):
        return (os.system, ("echo should-never-run",))


def test_a_pickle_naming_anything_but_tensors_is_refused(tmp_path, capfd):
    path = tmp_path / "evil.pth"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("evil/data.pkl", pickle.dumps({"w": _RunsCode()}, protocol=2))
    with pytest.raises(UserError, match=r"system.*only tensors and plain containers"):
        read_state_dict(path)
    assert "should-never-run" not in capfd.readouterr().out


def test_a_pickle_misusing_an_allowed_name_is_a_clear_error(tmp_path):
    path = tmp_path / "odd.pth"
    with zipfile.ZipFile(path, "w") as archive:
        # PROTO 2, GLOBAL torch.FloatStorage, (), REDUCE: calls a storage type.
        archive.writestr("odd/data.pkl", b"\x80\x02ctorch\nFloatStorage\n)R.")
    with pytest.raises(UserError, match="not a readable PyTorch checkpoint"):
        read_state_dict(path)


def test_not_a_checkpoint_and_a_missing_file_are_clear_errors(tmp_path):
    with pytest.raises(UserError, match="no weights file"):
        read_state_dict(tmp_path / "absent.pth")
    text = tmp_path / "notes.pth"
    text.write_text("not a checkpoint")
    with pytest.raises(UserError, match="not a readable PyTorch checkpoint|not a PyTorch"):
        read_state_dict(text)


def test_strided_tensors_are_read_with_their_layout():
    from mer_jax.models.torch_weights import _rebuild_tensor_v2

    storage = np.arange(12, dtype=np.float32)
    # A transposed (3, 4) -> (4, 3) view starting one element in, as torch pickles it.
    view = _rebuild_tensor_v2(storage, 1, (3, 3), (1, 4))
    np.testing.assert_array_equal(view, np.arange(1, 13, dtype=np.float32).reshape(3, 4)[:, :3].T)
    with pytest.raises(UserError, match="reaches past its storage"):
        _rebuild_tensor_v2(storage, 4, (3, 4), (4, 1))


def test_weights_that_do_not_fit_are_refused():
    state = read_state_dict(FIXTURE / "weights.pth")
    with pytest.raises(UserError, match="variant='released'"):
        load_official_weights(STSTNet(3, variant="paper", rngs=nnx.Rngs(0)), state)
    with pytest.raises(UserError, match=r"fc.weight: \(3, 400\) \(expected \(5, 400\)\)"):
        load_official_weights(STSTNet(5, variant="released", rngs=nnx.Rngs(0)), state)
    renamed = {("stream1" + k[5:] if k.startswith("conv1") else k): v for k, v in state.items()}
    with pytest.raises(UserError, match="conv1.weight: missing.*stream1.weight: unexpected"):
        load_official_weights(STSTNet(3, variant="released", rngs=nnx.Rngs(0)), renamed)
