"""The published-protocol configs (configs/protocols/), on the fake release of each database,
so none rots: every method on every protocol is validated as launch.py does, loads its
data and runs its full-size model on it (traced, not compiled); every protocol trains 2
steps with STSTNet, and every method trains 2 steps on the CASME II protocol. One replica
(the first fold) a run: more folds add nothing to what is checked but minutes. Compiling
the full-size models dominates a 2-step run on a CPU (MIACNet's 112 px convolutions most),
so training all 15 pairs would cost the suite many minutes: the other pairs are traced."""

import fake_releases
import jax
import jax.numpy as jnp
import pytest
from flax import nnx

import data_builders
from configs.protocols import base, casme2_5class, megc2019_composite, samm_5class
from data_builders.megc2019 import COMPOSITE_LIST
from mer_jax import models
from mer_jax.train import engine, validation

PROTOCOLS = {
    "megc2019_composite": megc2019_composite,
    "casme2_5class": casme2_5class,
    "samm_5class": samm_5class,
}
MAKERS = {
    "megc2019_composite": lambda root: fake_releases.make_megc2019(root, COMPOSITE_LIST),
    "casme2_5class": fake_releases.make_casme2,
    "samm_5class": fake_releases.make_samm,
}
# Tiny crops and flows, and 4 stored frames (LTR3O's candidates), keep the builds to seconds.
OVERRIDES = {"crop_size": 32, "flow_size": 8, "flow_method": "dis", "num_frames": 4}


def protocol_config(protocol, method, root):
    """The protocol's config for `method` on its fake release, cut to 2 steps of batch 2."""
    config = PROTOCOLS[protocol].get_config(method)
    config.data.manual_dir = str(root / protocol)
    config.data.data_dir = str(root / "data")
    config.data.overrides = OVERRIDES
    config.seeds = (0,)
    config.train.update({"steps": 2, "batch_size": 2, "checkpoint_every": 2, "warmup_steps": 0})
    config.engine.steps_per_dispatch = 2
    return config


@pytest.fixture(scope="module")
def releases(tmp_path_factory):
    """(root, protocol -> its dataset loaded as the protocol's config loads it)."""
    root = tmp_path_factory.mktemp("protocols")
    datasets = {}
    for protocol, make in MAKERS.items():
        make(root / protocol)
        datasets[protocol] = data_builders.load(protocol_config(protocol, "ststnet", root).data)
    return root, datasets


def test_the_published_schedules_and_the_composite(releases):
    composite = megc2019_composite.get_config("ststnet")
    assert composite.model.variant == "released"
    assert (composite.train.learning_rate, composite.train.batch_size) == (5e-5, 256)
    assert composite.train.steps == 800 * 2  # 800 epochs of 2 updates
    assert composite.data.name == "megc2019" and composite.seeds == (0, 1, 2, 3, 4)
    _, datasets = releases
    assert datasets["megc2019_composite"].num_samples == 442
    assert set(datasets["megc2019_composite"]["dataset"]) == {"casme2", "samm", "smic"}
    with pytest.raises(ValueError, match="unknown method 'sttsnet'"):
        casme2_5class.get_config("sttsnet")


@pytest.mark.parametrize("method", base.METHODS)
@pytest.mark.parametrize("protocol", list(PROTOCOLS))
def test_each_protocol_config_is_valid_and_its_model_reads_the_release(releases, protocol, method):
    root, datasets = releases
    config = protocol_config(protocol, method, root)
    validation.check_config(config)
    data_builders.check(config.data, "clips")
    dataset = datasets[protocol]
    model_config = models.with_build_settings(config.model, dataset.metadata)
    fields = models.model_class(model_config).fields
    batch = {field: jnp.asarray(dataset[field][:2]) for field in fields}

    def train_loss():
        model = models.create_model(model_config, len(dataset.class_names), rngs=nnx.Rngs(0))
        inputs = model.prepare(batch, jax.random.key(0), train=True)
        outputs = model(inputs, train=True, key=jax.random.key(1))
        return outputs["logits"], model.loss(outputs, jnp.asarray(dataset.labels[:2]))[0]

    logits, loss = jax.eval_shape(train_loss)
    assert logits.shape == (2, len(dataset.class_names)) and loss.shape == ()


TRAINED = [(protocol, "ststnet") for protocol in PROTOCOLS] + [
    ("casme2_5class", method) for method in base.METHODS if method != "ststnet"
]


@pytest.mark.parametrize(("protocol", "method"), TRAINED)
def test_protocol_configs_train_two_steps_on_the_fake_release(releases, protocol, method, tmp_path):
    root, datasets = releases
    config = protocol_config(protocol, method, root)
    run = engine.LosoRun(config, tmp_path / "run", datasets[protocol])
    run.replicas = run.replicas[:1]
    metrics = run.train()
    assert metrics["n_samples"] >= 1 and (tmp_path / "run" / "metrics.json").exists()
