"""The schema every experiment config derives from; each config overrides what it needs.

Any field can be changed from the command line, e.g.
`--config.train.steps=2000 --config.seeds='(0,1,2,3,4)' --config.engine.mode=stacked`.
The same concept has the same name in every config: LOSO configs (task "loso") and the
MA2MI pre-training config (task "pretrain") share this schema.
"""

import ml_collections
from ml_collections import config_dict


def get_base_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    # "loso": train and evaluate a classifier under leak-free LOSO (mer_jax.train.engine);
    # "pretrain": MA2MI pre-training on a macro-expression corpus (mer_jax.train.pretraining).
    config.task = "loso"
    # Results are reported as mean +- std over these seeds; each seed trains every fold
    # (pre-training trains one model: one seed).
    config.seeds = (0, 1, 2)

    config.data = ml_collections.ConfigDict()
    # A builder name: synthetic_me (default, no licence needed) or a real database.
    config.data.name = "synthetic_me"
    # Where built datasets are cached; None: $MER_JAX_DATA_DIR, else
    # ~/.cache/mer_jax/datasets.
    config.data.data_dir = config_dict.placeholder(str)
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
    # Real releases: rows and clips that cannot be used are skipped, reported and the
    # rest built; True makes any skipped one fail the build (as the CLI's --strict).
    config.data.strict = False
    # A CSV of your own corrections to the release's coding sheet, applied by every
    # reader (columns and an example: docs/datasets.md, "Errata"); None: the shipped errata only.
    config.data.errata = config_dict.placeholder(str)

    config.model = ml_collections.ConfigDict()
    # A registered model (mer_jax.models.MODELS) of the config's task; the other keys are
    # its constructor's arguments. Sizes that must agree with the build (e.g. DeRe-GRL's
    # crop_size) are read from the build's metadata.
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
    # What the decay shrinks: "all" parameters or only the "kernels" (**[ours]**: not
    # biases, norm scales or learned embeddings; `mer_jax.train.optim.DECAY_MASKS`).
    config.train.weight_decay_on = "all"
    config.train.schedule = "constant"
    config.train.warmup_steps = 0
    config.train.grad_clip = 0.0
    # How a batch is drawn from the fold's training clips: "uniform" (every clip alike) or
    # "balanced" (**[ours]**: each class equally often, a clip with probability inversely
    # proportional to its class's count among the fold's training clips).
    config.train.sampling = "uniform"
    # Learning-rate multiplier of the branches loaded by `init_from` (0 freezes them);
    # without init_from there are none and it has no effect.
    config.train.pretrained_lr_scale = 1.0
    config.train.checkpoint_every = 500

    config.tune = ml_collections.ConfigDict()
    # Leak-free selection of hyper-parameters (nested LOSO, mer_jax/train/tuning.py): the
    # values to try, section -> field -> values, e.g. {"train": {"learning_rate": (1e-3,
    # 3e-3)}, "model": {"dropout": (0.0, 0.3)}}. Empty: the config's own values ("fixed").
    config.tune.grid = ml_collections.ConfigDict()
    # Inner folds over each outer fold's training subjects: 0 = leave one subject out,
    # k >= 2 = k folds of whole subjects (faster).
    config.tune.inner_folds = 0
    # Seeds of the inner runs (None: config.seeds); the outer runs use config.seeds.
    config.tune.seeds = config_dict.placeholder(tuple)
    # A finished nested run (its workdir) whose choice for each outer fold this run
    # retrains with, instead of making its own (same data, folds and grid): ablations of
    # a tuned method at their base run's choices, for the cost of the outer runs.
    config.tune.choices_from = config_dict.placeholder(str)

    config.engine = ml_collections.ConfigDict()
    # "auto" (stacked on GPU/TPU, sequential on CPU), "stacked" or "sequential".
    config.engine.mode = "auto"
    # Replicas (fold x seed runs) per stacked chunk; 0 = as many as fit in device memory.
    config.engine.replicas_per_chunk = 0
    # Devices the run uses (-1 = all): LOSO stacks replicas over them (the mesh's `fold`
    # axis), pre-training splits each batch over them (its `data` axis).
    config.engine.devices = -1
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


# MIACNet's pre-trainable branches by size: "cpu" (grey input 28, action blocks 16/32,
# width 32, a 7 x 7 token grid) and "gpu" (RGB input 112, blocks 32/64/128, width 128, a
# 14 x 14 grid) [our reading of the paper's size].
_MIACNET_BRANCHES = {
    "cpu": {
        "input_size": 28,
        "grayscale": True,
        "action_features": (16, 32),
        "embed_features": 32,
        "grid": 7,
    },
    "gpu": {
        "input_size": 112,
        "grayscale": False,
        "action_features": (32, 64, 128),
        "embed_features": 128,
        "grid": 14,
    },
}


def miacnet_branches(size: str = "cpu") -> ml_collections.ConfigDict:
    """The pre-trainable branch settings of MIACNet (`miacnet.BranchSettings`) at `size`
    ("cpu" or "gpu"): shared by configs/miacnet.py, configs/ma2mi_pretrain.py and the
    published protocols, so a pre-training made at a size fits the fine-tuning at that
    size (`init_from` checks it).

    Raises:
        ValueError: an unknown size.
    """
    if size not in _MIACNET_BRANCHES:
        raise ValueError(f"unknown MIACNet size {size!r}; add one of {list(_MIACNET_BRANCHES)}")
    return ml_collections.ConfigDict(
        {**_MIACNET_BRANCHES[size], "vit_depth": 2, "vit_heads": 4, "vit_mlp_ratio": 2}
    )


def ltr3o_full_size(config: ml_collections.ConfigDict) -> None:
    """Sets LTR3O's full size and schedule on `config` [our reading]: K = 8 candidates of
    28 x 28 maps with strain (6 channels), a 32/64/128-channel encoder, 2000 steps of
    batch 64 on a cosine schedule (configs/ltr3o_full.py and the published protocols)."""
    config.model.update(
        {
            "num_candidates": 8,
            "input_size": 28,
            "use_strain": True,
            "encoder_features": (32, 64, 128),
            "scorer_features": 32,
        }
    )
    config.train.update(
        {"steps": 2000, "batch_size": 64, "schedule": "cosine", "warmup_steps": 100}
    )


def spotting_settings() -> ml_collections.ConfigDict:
    """How scores become intervals, the defaults of both spotting configs."""
    return ml_collections.ConfigDict(
        {
            # Moving average over 5 positions (200 ms at synthetic_lv's 40 ms sampling)
            # and p of the per-video threshold mean + p x (max - mean), the MEGC
            # baselines' rule (each config may set its own, chosen on a development
            # build of other recordings, never on the evaluated build:
            # docs/evaluation.md, "Spotting").
            "smooth_width": 5,
            "relative_threshold": 0.1,
            # A floor under that threshold (a learned spotter's probability: 0.5).
            "min_score": 0.0,
        }
    )
