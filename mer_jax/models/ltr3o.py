"""LTR3O: Learning to Rank Onset-Occurring-Offset representations (Zhu et al., IEEE TAC
2025, arXiv 2310.04664).

Published design: a 3O structure (the onset, an *occurring* frame drawn at random from
the clip, the offset) represents a sample without apex spotting; several 3O candidates
per sample; learning-to-rank modules measure and calibrate each candidate's emotional
expressiveness, widening the narrow expressiveness gap among micro-expression frames so
the candidates behave over time like a macro-expression. Only that outline is taken as
published fact; everything below the outline is **[our reading]**:

- Data: the builder stores T frames evenly spaced from onset to offset and, for every
  stored frame t, the flows onset->t and t->offset (`mer_jax.preprocess.clip`).
  Candidate sampling is indexing into those, on the device, in `prepare`.
- Candidate k = (onset, t_k, offset): t_k drawn uniformly from the interior stored
  frames in training (sorted by time), K evenly spaced interior frames at evaluation.
  Representation: [u, v] onset->t_k and [u, v] t_k->offset (4 channels; + the two
  strain maps with `use_strain`), min-max normalised per sample and channel *jointly
  over the K candidates*, so the relative motion size of the candidates survives.
- Encoder (shared by the candidates): conv 3x3 - BatchNorm - ReLU - 2x2 max-pool
  stages, global average pooling -> f_k (our first reading, the default; configs/ltr3o.py
  pads the pooling and flattens the last maps instead, `pool_padding` and `readout`).
- Expressiveness: a scorer s_k = MLP(f_k), trained with a pairwise hinge ranking loss
  against a label-free prior, the mean magnitude of the onset->t_k flow: for every
  pair whose prior (relative to the sample's largest) differs by more than
  `prior_margin`, the more moving candidate must score `rank_margin` higher. A hinge
  rather than RankNet's logistic loss so that a correctly ordered list costs nothing.
- Calibration: a margin loss max(0, cal_margin - (s_max - s_min)) widening the gap
  between the most and least expressive candidates, plus KL(profile || softmax(s/tau))
  pulling the time-ordered candidate weights towards a macro-expression-like
  rise-peak-fall profile: a Gaussian in normalised clip time, `profile_width` wide,
  centred on the candidate of largest prior.
- Classification: z = sum_k softmax(s/tau)_k f_k -> dense -> logits, plus an auxiliary
  cross-entropy of the same head on every candidate's f_k.
  L = CE(z) + weight_aux * CE_aux + weight_rank * L_rank + weight_cal * L_cal; a weight of
  0 is that module's ablation. With one candidate (K = 1) ranking and calibration have
  nothing to compare and are 0.
"""

from collections.abc import Sequence
from typing import ClassVar

import jax
import jax.numpy as jnp
from flax import nnx
from jax.typing import DTypeLike

from mer_jax.errors import UserError
from mer_jax.models.base import MERModel
from mer_jax.models.layers import batch_norm, conv, cross_entropy, max_pool, resize_maps

# Guards divisions by a sample's largest motion (a clip without measured motion).
_EPS = 1e-6
# The encoder's pooling padding and readout (`LTR3O`'s pool_padding and readout).
POOL_PADDINGS = ("VALID", "SAME")
READOUTS = ("mean", "flatten")


def ranking_loss(
    scores: jax.Array, prior: jax.Array, *, prior_margin: float, rank_margin: float
) -> jax.Array:
    """Pairwise hinge loss ordering the candidates' scores like their motion prior.

    Args:
        scores: (batch, K) expressiveness scores.
        prior: (batch, K) label-free expressiveness prior (mean onset->t flow magnitude).
        prior_margin: pairs whose priors, divided by the sample's largest prior, differ
            by at most this are not ranked (too close to call).
        rank_margin: the score gap required between a ranked pair.

    Returns:
        Scalar: mean over the batch of the mean hinge over ranked pairs (0 for a sample
        without any).
    """
    relative = prior / (prior.max(axis=-1, keepdims=True) + _EPS)
    # ranked[b, i, j]: candidate i moves clearly more than candidate j.
    ranked = (relative[:, :, None] - relative[:, None, :]) > prior_margin
    gap = scores[:, :, None] - scores[:, None, :]
    hinge = jnp.where(ranked, jax.nn.relu(rank_margin - gap), 0.0)
    per_sample = hinge.sum(axis=(1, 2)) / jnp.maximum(ranked.sum(axis=(1, 2)), 1)
    return per_sample.mean()


def calibration_loss(
    scores: jax.Array,
    prior: jax.Array,
    time: jax.Array,
    *,
    cal_margin: float,
    tau: float,
    profile_width: float,
) -> jax.Array:
    """Widens the score range and shapes the candidate weights like a macro-expression.

    Args:
        scores: (batch, K) expressiveness scores of time-ordered candidates.
        prior: (batch, K) motion prior; its largest candidate is the profile's peak.
        time: (batch, K) candidate positions in the clip, 0 (onset) to 1 (offset).
        cal_margin: the gap wanted between the largest and smallest score.
        tau: softmax temperature of the candidate weights (as in the pooling).
        profile_width: standard deviation of the Gaussian profile, in clip time.

    Returns:
        Scalar: mean over the batch of the margin hinge plus KL(profile || weights).
    """
    spread = jax.nn.relu(cal_margin - (scores.max(axis=-1) - scores.min(axis=-1)))
    peak = jnp.take_along_axis(time, prior.argmax(axis=-1)[:, None], axis=-1)
    profile = jax.nn.softmax(-0.5 * ((time - peak) / profile_width) ** 2, axis=-1)
    log_weights = jax.nn.log_softmax(scores / tau, axis=-1)
    kl = (profile * (jnp.log(profile + _EPS) - log_weights)).sum(axis=-1)
    return (spread + kl).mean()


def candidate_positions(
    frame_indices: jax.Array, key: jax.Array, *, num_candidates: int, train: bool
) -> jax.Array:
    """Positions (into the T stored frames) of each sample's K occurring frames.

    Interior positions are those whose frame is neither the onset nor the offset
    (stored frames repeat them when a clip is shorter than T); a clip without any
    interior frame uses its middle stored frame.

    Args:
        frame_indices: (batch, T) original frame numbers of the stored frames.
        key: randomness of the training draw.
        num_candidates: K.
        train: uniform draws (sorted by time) if True, else K evenly spaced positions
            (the centres of K equal parts of the interior: deterministic).

    Returns:
        int32 (batch, K) positions, non-decreasing along K.
    """
    num_stored = frame_indices.shape[1]
    first = (frame_indices == frame_indices[:, :1]).sum(axis=1)
    last = num_stored - 1 - (frame_indices == frame_indices[:, -1:]).sum(axis=1)
    empty = last < first
    first = jnp.where(empty, num_stored // 2, first)
    last = jnp.where(empty, num_stored // 2, last)
    span = (last - first + 1).astype(jnp.float32)[:, None]
    if train:
        fraction = jax.random.uniform(key, (frame_indices.shape[0], num_candidates))
        fraction = jnp.sort(fraction, axis=-1)
    else:
        fraction = (jnp.arange(num_candidates, dtype=jnp.float32) + 0.5) / num_candidates
    offset = jnp.minimum(jnp.floor(fraction * span), span - 1).astype(jnp.int32)
    return first[:, None] + offset


class CandidateEncoder(nnx.Module):
    """conv 3x3 - BatchNorm - ReLU - 2x2 max-pool stages, then a readout: global average
    pooling (the paper's reading) or **[ours]** the flattened last maps, which keep where
    on the face each feature fired."""

    def __init__(
        self,
        in_features: int,
        features: Sequence[int],
        *,
        input_size: int,
        pool_padding: str,
        readout: str,
        dtype: DTypeLike,
        rngs: nnx.Rngs,
    ) -> None:
        """Builds one stage per entry of `features` (its output channels); `pool_padding`
        and `readout` as `LTR3O`'s."""
        if pool_padding not in POOL_PADDINGS:
            raise UserError(f"model.pool_padding={pool_padding!r}; use one of {POOL_PADDINGS}")
        if readout not in READOUTS:
            raise UserError(f"model.readout={readout!r}; use one of {READOUTS}")
        widths = [in_features, *features]
        self.convs = nnx.List(
            [
                conv(n_in, n_out, (3, 3), padding="SAME", use_bias=False, dtype=dtype, rngs=rngs)
                for n_in, n_out in zip(widths[:-1], widths[1:], strict=True)
            ]
        )
        self.norms = nnx.List([batch_norm(n_out, dtype=dtype, rngs=rngs) for n_out in features])
        self.pool_padding = pool_padding
        self.readout = readout
        size = input_size
        for _ in features:
            size = -(-size // 2) if pool_padding == "SAME" else size // 2
        if size < 1:
            raise UserError(
                f"model.input_size={input_size} is too small for {len(features)} pooling "
                "stages; give a larger input_size or fewer encoder_features"
            )
        self.out_features = features[-1] * (size * size if readout == "flatten" else 1)

    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        """(N, H, W, in_features) -> (N, out_features)."""
        for conv_layer, norm in zip(self.convs, self.norms, strict=True):
            x = nnx.relu(norm(conv_layer(x), use_running_average=not train))
            x = max_pool(x, 2, padding=self.pool_padding)
        if self.readout == "flatten":
            return x.reshape(x.shape[0], -1)
        return x.mean(axis=(1, 2))


class LTR3O(MERModel):
    """LTR3O; see the module docstring for what is published and what is our reading."""

    fields: ClassVar[tuple[str, ...]] = (
        "frame_indices",
        "flow_onset_to_t",
        "flow_t_to_offset",
        "strain_onset_to_t",
        "strain_t_to_offset",
    )

    def __init__(
        self,
        num_classes: int,
        *,
        num_candidates: int = 8,
        input_size: int = 28,
        use_strain: bool = False,
        encoder_features: Sequence[int] = (32, 64, 128),
        scorer_features: int = 32,
        tau: float = 1.0,
        weight_aux: float = 0.5,
        weight_rank: float = 1.0,
        weight_cal: float = 0.5,
        prior_margin: float = 0.1,
        rank_margin: float = 1.0,
        cal_margin: float = 2.0,
        profile_width: float = 0.25,
        dropout: float = 0.0,
        pool_padding: str = "VALID",
        readout: str = "mean",
        dtype: DTypeLike = jnp.float32,
        rngs: nnx.Rngs,
    ) -> None:
        """Builds the network.

        Args:
            num_classes: number of expression classes.
            num_candidates: K, 3O candidates per sample.
            input_size: side of the candidates' motion maps; stored flows at another
                size are resized to it in `prepare`.
            use_strain: add the onset->t and t->offset strain maps (6 channels).
            encoder_features: output channels of the encoder's stages.
            scorer_features: hidden width of the expressiveness scorer MLP.
            tau: softmax temperature of the expressiveness weights.
            weight_aux: weight of the per-candidate auxiliary cross-entropy.
            weight_rank: weight of the ranking loss (0: no expressiveness ranking).
            weight_cal: weight of the calibration loss (0: no calibration).
            prior_margin: relative prior difference below which pairs are not ranked.
            rank_margin: score gap the ranking hinge asks of a ranked pair.
            cal_margin: score range (max - min) the calibration hinge asks for.
            profile_width: width (clip-time std) of the rise-peak-fall target profile.
            dropout: dropout rate on the pooled feature before the classifier.
            pool_padding: the encoder's 2x2 max-pooling: "VALID" drops an odd last row and
                column at each stage (14 -> 7 -> 3 -> 1 keeps 12 of 14 rows); "SAME"
                (**[ours]**) pads instead, so every row of the face reaches the feature.
            readout: "mean" (global average pooling) or "flatten" (**[ours]**).
            dtype: compute dtype; parameters stay float32, outputs are float32.
            rngs: initialisation randomness.
        """
        if num_candidates < 1:
            raise ValueError(f"num_candidates must be at least 1, got {num_candidates}")
        self.num_classes = num_classes
        self.num_candidates = num_candidates
        self.input_size = input_size
        self.use_strain = use_strain
        self.tau = tau
        self.weight_aux = weight_aux
        self.weight_rank = weight_rank
        self.weight_cal = weight_cal
        self.prior_margin = prior_margin
        self.rank_margin = rank_margin
        self.cal_margin = cal_margin
        self.profile_width = profile_width
        self.dtype = dtype
        in_features = 6 if use_strain else 4
        self.encoder = CandidateEncoder(
            in_features,
            encoder_features,
            input_size=input_size,
            pool_padding=pool_padding,
            readout=readout,
            dtype=dtype,
            rngs=rngs,
        )
        width = self.encoder.out_features
        self.scorer_hidden = nnx.Linear(width, scorer_features, dtype=dtype, rngs=rngs)
        self.scorer_out = nnx.Linear(scorer_features, 1, dtype=dtype, rngs=rngs)
        self.dropout = nnx.Dropout(dropout)
        self.classifier = nnx.Linear(width, num_classes, dtype=dtype, rngs=rngs)

    def prepare(
        self, batch: dict[str, jax.Array], key: jax.Array, *, train: bool
    ) -> dict[str, jax.Array]:
        """Samples the K candidates and builds their motion maps, on the device.

        Returns:
            "motion" (batch, K, size, size, 4 or 6) float32 in [0, 1], "prior" (batch, K)
            mean onset->t flow magnitude in crop pixels, "time" (batch, K) candidate
            positions in clip time (0 onset, 1 offset), "position" (batch, K) int32
            indices into the stored frames.
        """
        frame_indices = batch["frame_indices"]
        position = candidate_positions(
            frame_indices, key, num_candidates=self.num_candidates, train=train
        )

        def pick(name: str) -> jax.Array:
            stored = batch[name]
            index = position.reshape(position.shape + (1,) * (stored.ndim - 2))
            return jnp.take_along_axis(stored, index, axis=1).astype(jnp.float32)

        to_t, from_t = pick("flow_onset_to_t"), pick("flow_t_to_offset")
        prior = jnp.sqrt((to_t**2).sum(axis=-1)).mean(axis=(2, 3))
        maps = [to_t, from_t]
        if self.use_strain:
            maps += [pick("strain_onset_to_t"), pick("strain_t_to_offset")]
        motion = jnp.concatenate(maps, axis=-1)
        size, k = motion.shape[2], self.num_candidates
        flat = motion.reshape((-1, size, size, motion.shape[-1]))
        # Flow rescaled to the new grid's pixels, as `layers.resize_flow` does.
        scale = self.input_size / size
        motion = resize_maps(flat, self.input_size).reshape(
            (-1, k, self.input_size, self.input_size, motion.shape[-1])
        )
        motion = jnp.where(jnp.arange(motion.shape[-1]) < 4, motion * scale, motion)
        low = motion.min(axis=(1, 2, 3), keepdims=True)
        high = motion.max(axis=(1, 2, 3), keepdims=True)
        motion = (motion - low) / jnp.maximum(high - low, _EPS)
        first, last = frame_indices[:, :1], frame_indices[:, -1:]
        frames = jnp.take_along_axis(frame_indices, position, axis=1)
        time = (frames - first) / jnp.maximum(last - first, 1)
        return {
            "motion": motion,
            "prior": prior,
            "time": time.astype(jnp.float32),
            "position": position,
        }

    def __call__(
        self, inputs: dict[str, jax.Array], *, train: bool, key: jax.Array | None = None
    ) -> dict[str, jax.Array]:
        """Encodes, scores and pools the candidates.

        Returns:
            "logits" (batch, C) of the pooled feature, "candidate_logits" (batch, K, C),
            "scores" (batch, K) expressiveness, "weights" (batch, K) pooling weights, and
            "prior", "time" passed through for the loss; all float32.
        """
        motion = inputs["motion"].astype(self.dtype)
        batch, k = motion.shape[:2]
        features = self.encoder(motion.reshape((batch * k,) + motion.shape[2:]), train=train)
        features = features.reshape(batch, k, -1)
        scores = self.scorer_out(nnx.relu(self.scorer_hidden(features)))[..., 0]
        scores = scores.astype(jnp.float32)
        weights = jax.nn.softmax(scores / self.tau, axis=-1)
        pooled = jnp.einsum("bk,bkf->bf", weights.astype(features.dtype), features)
        pooled = self.dropout(pooled, deterministic=not train, rngs=key)
        return {
            "logits": self.classifier(pooled).astype(jnp.float32),
            "candidate_logits": self.classifier(features).astype(jnp.float32),
            "scores": scores,
            "weights": weights,
            "prior": inputs["prior"],
            "time": inputs["time"],
        }

    def loss(
        self, outputs: dict[str, jax.Array], labels: jax.Array
    ) -> tuple[jax.Array, dict[str, jax.Array]]:
        """CE + weighted aux CE, ranking and calibration; terms are the unweighted parts."""
        ce = cross_entropy(outputs["logits"], labels)
        k = self.num_candidates
        candidate_labels = jnp.repeat(labels[:, None], k, axis=1).reshape(-1)
        aux = cross_entropy(
            outputs["candidate_logits"].reshape(-1, self.num_classes), candidate_labels
        )
        zero = jnp.zeros((), jnp.float32)
        rank = cal = zero
        if k > 1:
            rank = ranking_loss(
                outputs["scores"],
                outputs["prior"],
                prior_margin=self.prior_margin,
                rank_margin=self.rank_margin,
            )
            cal = calibration_loss(
                outputs["scores"],
                outputs["prior"],
                outputs["time"],
                cal_margin=self.cal_margin,
                tau=self.tau,
                profile_width=self.profile_width,
            )
        total = ce + self.weight_aux * aux + self.weight_rank * rank + self.weight_cal * cal
        return total, {"ce": ce, "aux": aux, "rank": rank, "cal": cal}
