"""Defaults shared by every experiment config; each config overrides what it needs.

Any field can be changed from the command line, e.g.
`--config.train.steps=2000 --config.seeds='(0,1,2,3,4)' --config.engine.mode=stacked`.
"""

import os

import ml_collections
from ml_collections import config_dict


def default_data_dir() -> str:
    """Where built datasets are cached: $MER_JAX_DATA_DIR, else ~/.cache/mer_jax/datasets."""
    return os.environ.get(
        "MER_JAX_DATA_DIR", os.path.join(os.path.expanduser("~"), ".cache", "mer_jax", "datasets")
    )


def get_base_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    # Results are reported as mean +- std over these seeds; each seed trains every fold.
    config.seeds = (0, 1, 2)

    config.data = ml_collections.ConfigDict()
    # A builder name: synthetic_me (default, no licence needed) or a real database.
    config.data.name = "synthetic_me"
    config.data.data_dir = default_data_dir()
    # Folder of the licensed release, for real databases (see data_builders/).
    config.data.manual_dir = config_dict.placeholder(str)
    # Builder config name (None = the builder's default).
    config.data.builder_config = config_dict.placeholder(str)
    # Builder config fields to change, e.g. {"num_subjects": 4}; makes its own cache entry.
    config.data.overrides = ml_collections.ConfigDict()
    # Label protocol (None = the builder's own, e.g. casme2_5class for synthetic_me).
    config.data.protocol = config_dict.placeholder(str)
    # "loso": leave one (namespaced) subject out; "lodo": leave one dataset out.
    config.data.split = "loso"

    config.model = ml_collections.ConfigDict()
    config.model.name = "ststnet"
    # A finished pre-training workdir whose exported branches initialise the model
    # (MIACNet after configs/ma2mi_pretrain.py); its corpus must share no subject with
    # this run's dataset, which is checked.
    config.init_from = config_dict.placeholder(str)

    config.train = ml_collections.ConfigDict()
    # A fixed schedule chosen beforehand: no early stopping on the test subject.
    config.train.steps = 1000
    config.train.batch_size = 32
    config.train.optimizer = "adam"
    config.train.learning_rate = 1e-3
    config.train.weight_decay = 0.0
    config.train.schedule = "constant"
    config.train.warmup_steps = 0
    config.train.grad_clip = 0.0
    # Learning-rate multiplier of the branches loaded by `init_from` (0 freezes them);
    # without init_from there are none and it has no effect.
    config.train.pretrained_lr_scale = 1.0
    config.train.checkpoint_every = 500

    config.engine = ml_collections.ConfigDict()
    # "auto" (stacked on GPU/TPU, sequential on CPU), "stacked" or "sequential".
    config.engine.mode = "auto"
    # Replicas (fold x seed runs) per stacked chunk; 0 = as many as fit in device memory.
    config.engine.replicas_per_chunk = 0
    # Devices on the mesh's fold axis; -1 = all.
    config.engine.mesh_fold_devices = -1
    # Training steps run between two host synchronisations (metrics, progress, checkpoints).
    config.engine.steps_per_dispatch = 100
    # How those steps run: "scan" (one lax.scan program), "python" (one jitted step per
    # call, queued asynchronously) or "auto" ("python" on a CPU, where XLA runs convs
    # inside loops slowly; "scan" on GPU/TPU).
    config.engine.loop = "auto"
    # "float32" or "bfloat16" (compute only; parameters stay float32).
    config.engine.compute_dtype = "float32"
    # "disallow" turns any hidden host<->device copy in the training loop into an error.
    config.engine.transfer_guard = "disallow"
    return config
