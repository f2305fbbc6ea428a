"""`config.init_from`: branches exported by a pre-training run, loaded by a LOSO run.

A pre-training workdir (MA2MI, `mer_jax.train.pretraining`) ends with
`pretrained/`: the parameters and normalisation statistics of the sub-modules a
downstream model shares with it (MIACNet's `action` and `position` branches),
and `pretrained.json`: the branch settings those shapes come from and the
corpus's namespaced subjects. A LOSO run with `--config.init_from=<that workdir>`
starts every (fold, seed) replica from these weights (the other layers keep
their random initialisation) after two checks, both made by `prepare`:

- the branch settings of its model config equal the pre-training ones (else the
  shapes would not fit, or worse, fit by chance);
- leakage: no subject of the pre-training corpus is a subject of the downstream
  dataset. Under LOSO every subject is a test subject once, so any shared subject
  would have been seen (as macro-expressions) before being tested on. Subjects are
  compared by their namespaced names (`casme3/spNO.1`), which identify people only
  as far as a database's own subject ids do; a video-folder corpus is identified by
  its folder names (see its builder).
"""

import dataclasses
import json
import pathlib
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from flax import nnx

from mer_jax import guards, hosts, models
from mer_jax.errors import UserError

EXPORT_DIR = "pretrained"
EXPORT_JSON = "pretrained.json"


@dataclasses.dataclass(frozen=True)
class PretrainedBranches:
    """Shared sub-modules' weights of a pre-training run, as nested dicts of arrays."""

    params: dict[str, Any]  # {branch: pure dict of its nnx.Param values}
    rest: dict[str, Any]  # {branch: pure dict of its other state, e.g. BatchNorm statistics}
    settings: dict[str, Any]  # `models.branch_settings` of the pre-training's model config
    subjects: tuple[str, ...]
    identities_known: bool
    source: str  # the workdir, for messages

    @property
    def names(self) -> tuple[str, ...]:
        """The top-level sub-modules these weights replace (e.g. "action", "position")."""
        return tuple(self.params)


def export(
    workdir: pathlib.Path,
    params: nnx.State,
    rest: nnx.State,
    *,
    branches: Sequence[str],
    settings: Mapping[str, Any],
    corpus: Mapping[str, Any],
) -> pathlib.Path:
    """Writes `branches` of a trained model (host state) into `workdir`. With several
    processes every one calls it (Orbax coordinates the write); process 0 writes the JSON."""
    params_dict, rest_dict = nnx.to_pure_dict(params), nnx.to_pure_dict(rest)
    tree = {
        "params": {b: params_dict[b] for b in branches},
        "rest": {b: rest_dict[b] for b in branches if b in rest_dict},
    }
    tree = jax.tree.map(np.asarray, hosts.to_host(tree))
    target = (workdir / EXPORT_DIR).absolute()
    checkpointer = ocp.PyTreeCheckpointer()
    checkpointer.save(target, tree, force=True)
    meta = {
        "branches": list(branches),
        "branch_settings": dict(settings),
        "subjects": sorted(corpus["subjects"]),
        "identities_known": bool(corpus["identities_known"]),
        "datasets": list(corpus["datasets"]),
    }
    if hosts.is_primary():
        guards.atomic_write_text(workdir / EXPORT_JSON, json.dumps(meta, indent=2))
    return target


def prepare(
    init_from: str | pathlib.Path,
    model_config: Mapping[str, Any],
    downstream_subjects: Sequence[str],
) -> PretrainedBranches:
    """The branches a pre-training workdir exported, checked against the LOSO run that
    starts from them: same branch settings, and no subject in common.

    Raises:
        UserError: no exported branches there, other branch settings, or a shared
            subject (each message says what to do).
    """
    branches = _load(init_from)
    _check_settings(branches, models.branch_settings(model_config))
    _check_no_subject_overlap(branches, downstream_subjects)
    return branches


def _load(init_from: str | pathlib.Path) -> PretrainedBranches:
    """Reads the branches a pre-training workdir exported."""
    workdir = pathlib.Path(init_from).expanduser()
    meta_path, tree_path = workdir / EXPORT_JSON, (workdir / EXPORT_DIR).absolute()
    if not meta_path.exists() or not tree_path.is_dir():
        raise UserError(
            f"init_from={workdir} holds no pre-trained branches ({EXPORT_JSON} and {EXPORT_DIR}/ "
            "are written when a pre-training run finishes). Give the workdir of a finished "
            "`launch.py --config configs/ma2mi_pretrain.py` run."
        )
    meta = json.loads(meta_path.read_text())
    tree = ocp.PyTreeCheckpointer().restore(tree_path)
    return PretrainedBranches(
        params=tree["params"],
        rest=tree.get("rest", {}),
        settings=meta["branch_settings"],
        subjects=tuple(meta["subjects"]),
        identities_known=meta["identities_known"],
        source=str(workdir),
    )


def _check_settings(pretrained: PretrainedBranches, settings: Mapping[str, Any]) -> None:
    """The fine-tuning model must build its branches exactly as pre-training did."""
    now = json.loads(json.dumps(dict(settings)))  # tuples -> lists, as stored
    differ = sorted(
        key
        for key in set(now) | set(pretrained.settings)
        if now.get(key) != pretrained.settings.get(key)
    )
    if differ:
        settings = ", ".join(
            f"model.{k}={pretrained.settings.get(k)!r} (here {now.get(k)!r})" for k in differ
        )
        raise UserError(
            f"init_from={pretrained.source} was pre-trained with other branch settings: "
            f"{settings}. Set these to the pre-training values (its config.json), or pre-train "
            "with this config's."
        )


def _check_no_subject_overlap(
    pretrained: PretrainedBranches, downstream_subjects: Sequence[str]
) -> None:
    """Refuses a pre-training corpus holding any subject of the downstream LOSO run."""
    shared = sorted(set(pretrained.subjects) & {str(s) for s in downstream_subjects})
    if shared:
        shown = ", ".join(shared[:8]) + (f" and {len(shared) - 8} more" if len(shared) > 8 else "")
        listed = ",".join(f"'{s}'" for s in shared)
        raise UserError(
            f"init_from={pretrained.source} was pre-trained on {len(shared)} subject(s) of this "
            f"LOSO run ({shown}); every one is a test subject here, so the result would leak. "
            "Pre-train again without them, e.g. "
            f'--config.data.exclude_subjects="({listed},)".'
        )


def apply(params: nnx.State, rest: nnx.State, pretrained: PretrainedBranches) -> None:
    """Overwrites, in place, the pre-trained branches of a freshly initialised model's state.

    Only the exported sub-trees change (e.g. `action`, `position`); every other layer
    keeps its own initialisation. Works inside `jax.jit`/`vmap` (the pre-trained
    arrays become constants of the traced function).
    """
    for state, loaded in ((params, pretrained.params), (rest, pretrained.rest)):
        model_dict = nnx.to_pure_dict(state)
        for branch, values in loaded.items():
            if branch not in model_dict:
                raise UserError(
                    f"init_from={pretrained.source} has weights for `{branch}`, which this "
                    f"model does not have (its sub-modules: {sorted(model_dict)})."
                )
            model_dict[branch] = _merged(model_dict[branch], values, branch, pretrained.source)
        nnx.replace_by_pure_dict(state, model_dict)


def _merged(model_tree: Any, loaded_tree: Any, where: str, source: str) -> Any:
    """`loaded_tree`'s values in `model_tree`'s structure (a checkpoint stores every key,
    list indices included, as a string), with every key and shape checked."""
    if isinstance(model_tree, Mapping):
        loaded = (
            {str(k): v for k, v in loaded_tree.items()} if isinstance(loaded_tree, Mapping) else {}
        )
        if set(loaded) != {str(k) for k in model_tree}:
            raise UserError(
                f"init_from={source}: the pre-trained `{where}` has layers {sorted(loaded)}, "
                f"this model {sorted(str(k) for k in model_tree)}; use the pre-training's "
                "model settings."
            )
        return {
            k: _merged(v, loaded[str(k)], f"{where}.{k}", source) for k, v in model_tree.items()
        }
    if np.shape(model_tree) != np.shape(loaded_tree):
        raise UserError(
            f"init_from={source}: the pre-trained `{where}` has shape {np.shape(loaded_tree)}, "
            f"this model {np.shape(model_tree)}; use the pre-training's model settings."
        )
    return jax.numpy.asarray(loaded_tree, dtype=model_tree.dtype)
