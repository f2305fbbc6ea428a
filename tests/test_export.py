"""Every model's training dispatch and prediction, exported for TPU and GPU from this CPU.

`jax.export` with `platforms=("tpu", "cuda")` lowers a function for those backends
without them: whatever would lower only on a CPU (a CPU-only custom call, a host
callback, a sharding the mesh cannot express) fails here instead of on the first
accelerator it meets. The functions are the engine's own: a `LosoRun` built from each
model's config (stacked over the 8 test devices, `engine.loop=scan`, bfloat16 compute)
makes them with `stacking.build_functions`, and MA2MI's pre-training step is the one a
`PretrainingRun` compiles.

The models choose their CPU-only code (convolutions as patches, see
`mer_jax.models.layers`) by `jax.default_backend()`, so the export traces with it
reporting "tpu": the programs exported are those an accelerator would run.
"""

import fixtures
import jax
import jax.numpy as jnp
import pytest
from fixtures import make_run, tiny_config
from jax import export
from jax.sharding import NamedSharding, PartitionSpec
from test_pretrain import macro_data_dir, pretrain_config  # noqa: F401 (a fixture)

from mer_jax import models

PLATFORMS = ("tpu", "cuda")
# Each registered LOSO model under its config; LTR3O at its accelerator size.
CONFIGS = {
    "ststnet": "ststnet",
    "fr": "fr",
    "ltr3o": "ltr3o_full",
    "dere_grl": "dere_grl",
    "miacnet": "miacnet",
}
# Models with a convolution: it must lower as XLA's own op, not as the CPU's patches.
CONVOLUTIONAL = ("ststnet", "fr", "ltr3o", "miacnet")
# A dispatch of several steps, so `lax.scan` (a while loop) is what gets exported.
ACCELERATOR_ENGINE = {
    "engine.mode": "stacked",
    "engine.devices": -1,
    "engine.loop": "scan",
    "engine.compute_dtype": "bfloat16",
    "engine.steps_per_dispatch": 4,
    "train.steps": 4,
    "train.warmup_steps": 2,
    "train.checkpoint_every": 4,
}

synthetic_data_dir = fixtures.synthetic_data_dir


def export_for_accelerators(
    function, args, monkeypatch: pytest.MonkeyPatch
) -> export.Exported:
    """`function` exported for TPU and CUDA, traced as on an accelerator."""
    with monkeypatch.context() as patched:
        patched.setattr(jax, "default_backend", lambda: "tpu")
        return export.export(function, platforms=PLATFORMS)(*args)


def test_every_registered_loso_model_is_exported():
    assert set(CONFIGS) == {name for name, cls in models.MODELS.items() if cls.TASK == "loso"}


@pytest.mark.parametrize("model", CONFIGS)
def test_stacked_scan_bfloat16_dispatch_and_predict_export(
    model, synthetic_data_dir, tmp_path, monkeypatch
):
    config = tiny_config(synthetic_data_dir, ACCELERATOR_ENGINE, base=CONFIGS[model])
    run = make_run(config, tmp_path)
    assert run.loop == "scan" and run.steps_per_call == 4
    (chunk,) = run.chunks()
    assert chunk.padded_size == 8  # one replica on each of the 8 devices
    arrays = run._chunk_arrays(chunk)
    stage = run.plain_stage
    state = run._abstract_state(stage, arrays)
    start = jax.ShapeDtypeStruct((), jnp.int32)

    train = export_for_accelerators(
        stage.functions.train,
        (state, run.data, arrays["train_idx"], arrays["n_train"], arrays["keys"], start),
        monkeypatch,
    )
    predict = export_for_accelerators(
        stage.functions.predict,
        (state, run.data, arrays["test_idx"], arrays["keys"]),
        monkeypatch,
    )
    for exported in (train, predict):
        assert exported.platforms == PLATFORMS and exported.nr_devices == 8
    program = train.mlir_module()
    assert "stablehlo.while" in program  # the scan over the dispatch's steps
    assert "bf16" in program
    if model in CONVOLUTIONAL:
        assert "stablehlo.convolution" in program
        assert "stablehlo.convolution" in predict.mlir_module()


def test_ma2mi_pretraining_step_export(macro_data_dir, tmp_path, monkeypatch):  # noqa: F811
    config = pretrain_config(macro_data_dir, **{"engine.compute_dtype": "bfloat16"})
    run = make_run(config, tmp_path)
    assert run.mesh.shape["data"] == 8
    data, pool, _ = run._resident_corpus()
    step = jax.ShapeDtypeStruct((), jnp.int32, sharding=NamedSharding(run.mesh, PartitionSpec()))
    exported = export_for_accelerators(
        run._step_fns["resident"], (run._abstract_state(), data, pool, step), monkeypatch
    )
    assert exported.platforms == PLATFORMS and exported.nr_devices == 8
    program = exported.mlir_module()
    assert "bf16" in program and "stablehlo.convolution" in program
