r"""MA2MI pre-training of MIACNet's branches on the synthetic macro-expression database.

Command:
  python launch.py --config configs/ma2mi_pretrain.py --workdir runs/ma2mi
then fine-tune under LOSO from it:
  python launch.py --config configs/miacnet.py --config.init_from=runs/ma2mi

Frame pairs (I_t, I_{t+k}) of macro-expression clips (k = 2 frames at 30 fps, scaled by
fps); the action branch encodes I_{t+k} - I_t, the position branch I_t, and a light
decoder reconstructs I_{t+k} (`mer_jax/models/ma2mi.py`). Data-parallel over the run's
devices (the mesh's `data` axis); the corpus is resident on the devices when it fits in
`data.resident_max_mb`, else streamed through grain (`data.streaming`). Other corpora:
`--config.data.name=ckplus|casme3_macro|video_folder --config.data.manual_dir=DIR`. A
corpus holding people of the downstream dataset must leave them out
(`--config.data.exclude_subjects="('casme3/spNO.1',)"`); fine-tuning checks it.

The branch settings come from `common.miacnet_branches()`, shared with configs/miacnet.py,
so the two configs always fit (`--config configs/ma2mi_pretrain.py:gpu`: the GPU size).
Expected result: the reconstruction error on 512 fixed pairs falls well below the copy-I_t
baseline (`fixed_pairs_eval` in pretrain_metrics.json; the measured figures are in
RESULTS.md).
"""

import ml_collections

from configs import common


def get_config(size: str = "cpu") -> ml_collections.ConfigDict:
    config = common.get_base_config()
    config.task = "pretrain"
    config.seeds = (0,)

    # A macro-expression builder: synthetic_macro (default), ckplus, casme3_macro, video_folder.
    config.data.name = "synthetic_macro"
    # Namespaced subjects left out of pre-training (the downstream dataset's people).
    config.data.exclude_subjects = ()
    # "auto" (resident if it fits in resident_max_mb, else grain), "resident" or "grain".
    config.data.streaming = "auto"
    config.data.resident_max_mb = 1024
    config.data.grain_threads = 4

    config.model.name = "ma2mi"
    config.model.update(common.miacnet_branches(size))
    config.model.hflip = True

    config.train.steps = 1000
    config.train.batch_size = 64
    config.train.learning_rate = 1e-3
    config.train.schedule = "cosine"
    config.train.warmup_steps = 100
    config.train.grad_clip = 1.0
    config.train.checkpoint_every = 500
    config.engine.steps_per_dispatch = 50
    return config
