r"""MA2MI pre-training of MIACNet's branches on the synthetic macro-expression database.

Command:
  python launch.py --config configs/ma2mi_pretrain.py --workdir runs/ma2mi
then fine-tune under LOSO from it:
  python launch.py --config configs/miacnet.py --config.init_from=runs/ma2mi

Frame pairs (I_t, I_{t+k}) of macro-expression clips (k = 2 frames at 30 fps, scaled by
fps); the action branch encodes I_{t+k} - I_t, the position branch I_t, and a light
decoder reconstructs I_{t+k} (`mer_jax/models/ma2mi.py`). Data-parallel over every device
on the mesh's `data` axis; the corpus is resident on the devices when it fits in
`data.resident_max_mb`, else streamed through grain (`data.streaming`). Other corpora:
`--config.data.name=ckplus|casme3_macro|video_folder --config.data.manual_dir=DIR`. A
corpus holding people of the downstream dataset must leave them out
(`--config.data.exclude_subjects="('casme3/spNO.1',)"`); fine-tuning checks it.

The branch settings come from configs/miacnet.py, so the two configs always fit.
Measured on the default synthetic macro database (151 clips, 2,416 pairs, 16 subjects,
resident), 1000 steps of batch 64 on the idle 2-core CPU: 88 s for the whole command
including the corpus build, 55 s of training (2,332 frames/s, i.e. 1,166 pairs/s), 7.7 s
compiling (a run sharing the CPU with a test suite: 258 s, 579 frames/s); reconstruction
error on 512 fixed pairs 0.0012 (mean absolute, [0, 1] intensities) against 0.0047 for
copying I_t.
"""

import ml_collections
from ml_collections import config_dict

from configs import common, miacnet
from mer_jax.models.miacnet import BRANCH_KEYS


def get_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.task = "pretrain"
    config.seed = 0

    config.data = ml_collections.ConfigDict()
    # A macro-expression builder: synthetic_macro (default), ckplus, casme3_macro, video_folder.
    config.data.name = "synthetic_macro"
    config.data.data_dir = common.default_data_dir()
    config.data.manual_dir = config_dict.placeholder(str)
    config.data.builder_config = config_dict.placeholder(str)
    config.data.overrides = ml_collections.ConfigDict()
    # Namespaced subjects left out of pre-training (the downstream dataset's people).
    config.data.exclude_subjects = ()
    # "auto" (resident if it fits in resident_max_mb, else grain), "resident" or "grain".
    config.data.streaming = "auto"
    config.data.resident_max_mb = 1024
    config.data.grain_threads = 4

    config.model = ml_collections.ConfigDict()
    config.model.name = "ma2mi"
    branches = miacnet.get_config().model
    for key in BRANCH_KEYS:
        config.model[key] = branches[key]
    config.model.hflip = True

    config.train = ml_collections.ConfigDict()
    config.train.steps = 1000
    config.train.batch_size = 64
    config.train.optimizer = "adam"
    config.train.learning_rate = 1e-3
    config.train.weight_decay = 0.0
    config.train.schedule = "cosine"
    config.train.warmup_steps = 100
    config.train.grad_clip = 1.0
    config.train.checkpoint_every = 500
    config.train.log_every = 50

    config.engine = ml_collections.ConfigDict()
    # Devices on the data axis; -1 = all.
    config.engine.mesh_data_devices = -1
    config.engine.compute_dtype = "float32"
    config.engine.transfer_guard = "disallow"
    return config
