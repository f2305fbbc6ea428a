"""DeRe-GRL: Decomposition and Reconstruction Graph Representation Learning.

Wei et al., IEICE Transactions 2023, arXiv 2303.01776. Published design: a graph-model
backbone extracts geometric movement features from facial landmarks; the action
decomposition module (ADM) splits them by facial key component into sub-features and
maps each, through a learned map matrix, into several action features; the relation
reconstruction module (RRM) learns weights over all action features to build their
relationship, from which the expression is classified. The prior behind it: a
micro-expression's category follows from the relationship between the actions of
different facial components. The backbone follows the same first author's graph
model (arXiv 2205.00380): landmarks as nodes, a learnable adjacency, low- and
high-order movement streams and an adaptive AU loss.

Only that outline is published fact; the layer-level design is **[our reading]**:

- Nodes: the 68 iBUG landmarks. Node features (`graph.node_features`, computed in
  `prepare` on the device): apex - onset displacement minus the clip's head drift, the
  patch-mean flow and flow magnitude at each landmark (low order), the same
  displacement and flow minus their anatomical neighbours' mean (high order), and the
  position relative to the eye midpoint; motion in percent of the inter-ocular distance.
- Backbone: two graph-convolution streams (low order, high order), each `num_layers`
  layers `relu(A X W + b)` over `A = D^-1/2 (A_anat + I) D^-1/2 + softmax(relu(E E^T))`
  (the second term learnable, E: 68 x `adjacency_features`, row softmax), their outputs
  concatenated and fused by a dense layer + ReLU into H (68 x `hidden_features`).
- ADM: components right brow 17-21, left brow 22-26, nose 27-35, right eye 36-41, left
  eye 42-47, mouth 48-67 (+ jaw 0-16 with `include_jaw`). Sub-feature of a component =
  [mean, max] of its nodes' H; a learned map matrix per component (+ bias) maps it to
  `num_actions` action features of `action_features` dims (linear, as a "map matrix").
  Without ADM (`use_adm=False`, the ablation): no split by component, one matrix maps the
  [mean, max] over all 68 nodes to the same number of action features (same parameter
  count). `adm_pooling="nodes"` (**[ours]**, a trial of docs/methods.md): a component's
  sub-feature is its nodes' H in landmark order (zero-padded to the largest component),
  so its map matrix sees which landmark moved, not only the component's mean and max;
  without ADM, all 68 nodes' H. The reconstruction targets stay [mean, max].
- RRM: weights alpha = softmax(W vec(actions) + b) over all components x actions (from
  their concatenation); a weighted sum z_w = sum_n alpha_n a_n plus a learned pairwise
  relation term z_r = sum_{n,m} alpha_n alpha_m relu(U a_n + V a_m + c); the classifier
  reads [z_w, z_r]. Without RRM (`use_rrm=False`): the classifier reads the
  concatenated action features.
- Loss: CE + `weight_au` * AU loss. AU loss: multi-label BCE of a linear AU head on the
  concatenated action features, against the AUs parsed from the annotation
  (`action_units`), class-frequency balanced within the batch: for each AU its positive
  and its negative samples weigh one half each, whatever their counts. A sample whose
  AU cell was not read (`action_units_known` 0: not coded, or unreadable) or whose AU
  vector is all zero (a clip coded with none of the build's AUs) carries no AU
  supervision and is masked out per sample. Batch-local balancing fits nothing across
  folds.
- Reconstruction loss (`weight_rec`; 0 removes it and its decoder): the paper names a
  reconstruction, but its RRM is a module, not a loss; this objective is ours, in the
  spirit of decomposition and reconstruction. Each component's `num_actions` action
  features, weighted by the RRM (alpha_n times the number of action features, so a
  uniform weighting is 1; without RRM, 1), are concatenated and a light decoder (one
  dense layer shared by the components) reconstructs that component's backbone
  sub-feature [mean, max] of H. The loss is the squared error relative to the targets'
  mean square, both sides differentiable: the actions and their weights must keep what
  the backbone found in each component, and being scale-free, the loss cannot be lowered
  by shrinking H towards zero (with the targets' gradient stopped, or an absolute error,
  it can, and in our checks at a learning rate of 1e-2 the backbone's ReLUs then died).
  Without ADM the k-th group of actions reconstructs the k-th component.
"""

from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import optax
from flax import nnx
from jax.typing import DTypeLike

from mer_jax.errors import UserError
from mer_jax.models import graph
from mer_jax.models.base import MERModel
from mer_jax.models.layers import cross_entropy, hflip_flow

_LOW_FEATURES = 7
_HIGH_FEATURES = 6
# Guards the relative reconstruction error of all-zero targets (e.g. no motion at all).
_REC_EPS = 1e-6
# What an ADM map matrix reads of its component (`DeReGRL(adm_pooling=...)`).
ADM_POOLINGS: tuple[str, ...] = ("mean_max", "nodes")


class GraphStream(nnx.Module):
    """`num_layers` graph convolutions relu(A X W + b) over a shared adjacency."""

    def __init__(
        self,
        in_features: int,
        hidden_features: int,
        num_layers: int,
        *,
        dtype: DTypeLike,
        rngs: nnx.Rngs,
    ) -> None:
        """Builds the layers; the first reads `in_features`, the rest `hidden_features`."""
        widths = [in_features] + [hidden_features] * num_layers
        self.layers = nnx.List(
            [
                nnx.Linear(n_in, n_out, dtype=dtype, rngs=rngs)
                for n_in, n_out in zip(widths[:-1], widths[1:], strict=True)
            ]
        )

    def __call__(self, x: jax.Array, adjacency: jax.Array) -> jax.Array:
        """(batch, 68, in_features), (68, 68) -> (batch, 68, hidden_features)."""
        for layer in self.layers:
            # A (X W) + b = (A X) W + A b 1: propagating on the narrower side is the same
            # layer for fewer FLOPs (the first layer reads 6-7 features, not H). The bias
            # is added before propagation in both orders.
            if layer.in_features < layer.out_features:
                propagated = jnp.einsum("ij,bjc->bic", adjacency, x)
                bias = adjacency.sum(axis=1)[:, None] * layer.bias[...]
                x = propagated @ layer.kernel[...].astype(x.dtype) + bias.astype(x.dtype)
            else:
                x = jnp.einsum("ij,bjc->bic", adjacency, layer(x))
            x = nnx.relu(x)
        return x


def au_loss(logits: jax.Array, targets: jax.Array, mask: jax.Array) -> jax.Array:
    """Class-frequency balanced multi-label BCE over the AUs, masked per sample.

    Args:
        logits: (batch, num_aus) AU logits.
        targets: (batch, num_aus) 0/1 AU labels.
        mask: (batch,) 1 for samples with AU labels, 0 for samples without (ignored).

    Returns:
        Scalar float32: the mean over AUs of (half the mean BCE over the AU's positive
        samples + half over its negative samples), among masked-in samples; 0 when no
        sample of the batch has AU labels.
    """
    logits = logits.astype(jnp.float32)
    bce = optax.sigmoid_binary_cross_entropy(logits, targets)
    weight = mask.astype(jnp.float32)[:, None]
    positive = targets * weight
    negative = (1.0 - targets) * weight
    positive_term = (bce * positive).sum(0) / jnp.maximum(positive.sum(0), 1.0)
    negative_term = (bce * negative).sum(0) / jnp.maximum(negative.sum(0), 1.0)
    return (0.5 * (positive_term + negative_term)).mean()


def reconstruction_loss(reconstruction: jax.Array, targets: jax.Array) -> jax.Array:
    """Mean squared error relative to the targets' mean square (1 for an all-zero
    reconstruction), float32 scalar."""
    error = jnp.square(reconstruction - targets).mean()
    return error / (jnp.square(targets).mean() + _REC_EPS)


class DeReGRL(MERModel):
    """DeRe-GRL on the landmark graph; see the module docstring for the architecture."""

    fields: ClassVar[tuple[str, ...]] = (
        "flow",
        "landmarks_onset",
        "landmarks_apex",
        "action_units",
        "action_units_known",
    )

    # The crop size the landmarks and flow are measured in, and the AU vector length.
    BUILD_SETTINGS: ClassVar[Mapping[str, Callable[[Mapping[str, Any]], Any]]] = {
        "crop_size": lambda metadata: int(metadata["crop_size"]),
        "num_action_units": lambda metadata: len(metadata["action_units"]),
    }

    def __init__(
        self,
        num_classes: int,
        *,
        crop_size: int = 128,
        hidden_features: int = 32,
        num_layers: int = 2,
        use_high_order: bool = True,
        learnable_adjacency: bool = True,
        adjacency_features: int = 8,
        use_adm: bool = True,
        adm_pooling: str = "mean_max",
        include_jaw: bool = False,
        num_actions: int = 4,
        action_features: int = 16,
        use_rrm: bool = True,
        relation_features: int = 16,
        weight_au: float = 0.5,
        weight_rec: float = 0.5,
        num_action_units: int = 20,
        dropout: float = 0.0,
        hflip: bool = False,
        label_smoothing: float = 0.0,
        dtype: DTypeLike = jnp.float32,
        rngs: nnx.Rngs,
    ) -> None:
        """Builds the network.

        Args:
            num_classes: number of expression classes.
            crop_size: side C of the dataset's face crops (read from the build:
                `settings_from_build`): landmarks and flow values are in crop pixels and
                the flow map spans the crop, so this places the landmarks on the flow map.
            hidden_features: width of the graph streams and of the fused node features H.
            num_layers: graph convolutions per stream.
            use_high_order: add the high-order stream (False: low-order stream only).
            learnable_adjacency: add softmax(relu(E E^T)) to the anatomical adjacency.
            adjacency_features: columns of E.
            use_adm: decompose by facial component (False: the no-ADM ablation).
            adm_pooling: what a component's map matrix reads: "mean_max" ([mean, max] of
                its nodes) or "nodes" (**[ours]**: every node's features, in order).
            include_jaw: add the jaw (0-16) as a seventh component.
            num_actions: action features M per component.
            action_features: dims of one action feature.
            use_rrm: relation reconstruction (False: the no-RRM ablation).
            relation_features: dims of the pairwise relation term.
            weight_au: weight of the AU loss; 0 is the no-AU-loss ablation (no AU head).
            weight_rec: weight of the reconstruction loss **[our reading]**; 0 is the
                ablation (no decoder).
            num_action_units: length of the dataset's AU vectors (read from the build).
            dropout: dropout rate on the classifier input.
            hflip: random horizontal flips in training (landmarks renumbered, flow
                mirrored, u negated); not in the paper.
            label_smoothing: label smoothing of the classification cross-entropy.
            dtype: compute dtype; parameters stay float32, logits are float32.
            rngs: initialisation randomness.

        Raises:
            UserError: a size or weight that cannot build the network.
        """
        for name, value in (
            ("crop_size", crop_size),
            ("hidden_features", hidden_features),
            ("num_layers", num_layers),
            ("adjacency_features", adjacency_features),
            ("num_actions", num_actions),
            ("action_features", action_features),
            ("relation_features", relation_features),
            ("num_action_units", num_action_units),
        ):
            if value < 1:
                raise UserError(f"DeRe-GRL needs {name} >= 1, got {value}.")
        if adm_pooling not in ADM_POOLINGS:
            raise UserError(f"model.adm_pooling={adm_pooling!r}; use one of {ADM_POOLINGS}.")
        for name, value in (("weight_au", weight_au), ("weight_rec", weight_rec)):
            if value < 0:
                raise UserError(f"DeRe-GRL needs {name} >= 0, got {value}.")
        self.num_classes = num_classes
        self.crop_size = crop_size
        self.use_high_order = use_high_order
        self.learnable_adjacency = learnable_adjacency
        self.use_adm = use_adm
        self.adm_pooling = adm_pooling
        self.use_rrm = use_rrm
        self.num_actions = num_actions
        self.action_features = action_features
        self.weight_au = weight_au
        self.weight_rec = weight_rec
        self.hflip = hflip
        self.label_smoothing = label_smoothing
        self.dtype = dtype
        self.component_names = tuple(graph.components(include_jaw))
        # (first, stop) landmark ranges of the components: static Python values, so
        # pooling is plain slicing.
        self.component_ranges = tuple(
            (r.start, r.stop) for r in graph.components(include_jaw).values()
        )
        num_groups = len(self.component_ranges)

        self.low_stream = GraphStream(
            _LOW_FEATURES, hidden_features, num_layers, dtype=dtype, rngs=rngs
        )
        streams = 1
        if use_high_order:
            self.high_stream = GraphStream(
                _HIGH_FEATURES, hidden_features, num_layers, dtype=dtype, rngs=rngs
            )
            streams = 2
        else:
            self.high_stream = None
        if learnable_adjacency:
            # std 1/sqrt(columns): E E^T starts near unit scale, so the learned term
            # starts as a diffuse (almost uniform) mixing rather than a copy of I.
            init = nnx.initializers.normal(stddev=adjacency_features**-0.5)
            self.adjacency_embedding = nnx.Param(
                init(rngs.params(), (graph.NUM_LANDMARKS, adjacency_features))
            )
        else:
            self.adjacency_embedding = None
        self.fuse = nnx.Linear(streams * hidden_features, hidden_features, dtype=dtype, rngs=rngs)

        # ADM map matrices, stored stacked (groups, 2H, M * D) so one einsum maps every
        # component. Without ADM, one matrix maps the whole face to all groups' actions.
        sub_features = 2 * hidden_features  # [mean, max]: the reconstruction's targets
        actions_per_map = num_actions * action_features
        init = nnx.initializers.lecun_normal()
        if adm_pooling == "nodes":
            largest = max(b - a for a, b in self._adm_spans())
            map_in = largest * hidden_features
        else:
            map_in = sub_features
        if use_adm:
            shape = (num_groups, map_in, actions_per_map)
        else:
            shape = (1, map_in, num_groups * actions_per_map)
        self.map_matrices = nnx.Param(init(rngs.params(), shape))
        self.map_bias = nnx.Param(jnp.zeros(shape[::2]))
        num_action_features = num_groups * num_actions
        flat_actions = num_action_features * action_features

        if use_rrm:
            self.rrm_scores = nnx.Linear(flat_actions, num_action_features, dtype=dtype, rngs=rngs)
            self.relation_first = nnx.Linear(
                action_features, relation_features, dtype=dtype, rngs=rngs
            )
            self.relation_second = nnx.Linear(
                action_features, relation_features, use_bias=False, dtype=dtype, rngs=rngs
            )
            classifier_in = action_features + relation_features
        else:
            self.rrm_scores = self.relation_first = self.relation_second = None
            classifier_in = flat_actions
        self.dropout = nnx.Dropout(dropout)
        self.classifier = nnx.Linear(classifier_in, num_classes, dtype=dtype, rngs=rngs)
        self.au_head = (
            nnx.Linear(flat_actions, num_action_units, dtype=dtype, rngs=rngs)
            if weight_au > 0
            else None
        )
        self.decoder = (
            nnx.Linear(actions_per_map, sub_features, dtype=dtype, rngs=rngs)
            if weight_rec > 0
            else None
        )

    # -- inputs ---------------------------------------------------------------------

    def prepare(
        self, batch: dict[str, jax.Array], key: jax.Array, *, train: bool
    ) -> dict[str, jax.Array]:
        """Node features and AU targets from the gathered fields, on the device.

        Returns:
            "low" (batch, 68, 7) and "high" (batch, 68, 6) float32 node features (see
            `graph.node_features`), "au_targets" (batch, num_aus) float32 and "au_mask"
            (batch,) float32, 1 where the sample's AU cell was read and names any AU of
            the vector. The AU fields only reach the loss; the logits never read them.
        """
        onset, apex, flow = batch["landmarks_onset"], batch["landmarks_apex"], batch["flow"]
        if self.hflip and train:
            flip = jax.random.bernoulli(key, 0.5, (flow.shape[0],))
            onset = graph.hflip_landmarks(onset.astype(jnp.float32), self.crop_size, flip)
            apex = graph.hflip_landmarks(apex.astype(jnp.float32), self.crop_size, flip)
            flow = hflip_flow(flow.astype(jnp.float32), flip)
        features = graph.node_features(onset, apex, flow, crop_size=self.crop_size)
        au_targets = batch["action_units"].astype(jnp.float32)
        return {
            **features,
            "au_targets": au_targets,
            "au_mask": ((batch["action_units_known"] > 0) & (au_targets.max(axis=-1) > 0)).astype(
                jnp.float32
            ),
        }

    # -- network ----------------------------------------------------------------------

    def adjacency(self) -> tuple[jax.Array, jax.Array | None]:
        """The propagation matrix A (68, 68) and its learned part (None without one)."""
        anatomical = jnp.asarray(graph.normalized_adjacency(), self.dtype)
        if self.adjacency_embedding is None:
            return anatomical, None
        embedding = self.adjacency_embedding[...]
        learned = jax.nn.softmax(nnx.relu(embedding @ embedding.T), axis=-1)
        return anatomical + learned.astype(self.dtype), learned

    @staticmethod
    def _sub_features(nodes: jax.Array, spans: tuple[tuple[int, int], ...]) -> jax.Array:
        """[mean, max] of the nodes of each span: (batch, spans, 2H)."""
        return jnp.stack(
            [
                jnp.concatenate([nodes[:, a:b].mean(axis=1), nodes[:, a:b].max(axis=1)], axis=-1)
                for a, b in spans
            ],
            axis=1,
        )

    def _adm_spans(self) -> tuple[tuple[int, int], ...]:
        """The landmark spans the map matrices read: the components, or the whole face."""
        return self.component_ranges if self.use_adm else ((0, graph.NUM_LANDMARKS),)

    @staticmethod
    def _node_features(nodes: jax.Array, spans: tuple[tuple[int, int], ...]) -> jax.Array:
        """The nodes of each span in order, flattened and zero-padded to the largest span:
        (batch, spans, largest * H)."""
        largest = max(b - a for a, b in spans)
        return jnp.stack(
            [
                jnp.pad(nodes[:, a:b], ((0, 0), (0, largest - (b - a)), (0, 0))).reshape(
                    nodes.shape[0], -1
                )
                for a, b in spans
            ],
            axis=1,
        )

    def _actions(self, nodes: jax.Array, components: jax.Array) -> jax.Array:
        """ADM: (batch, 68, H) node features and their (batch, groups, 2H) component
        sub-features -> (batch, groups * M, D) action features."""
        if self.adm_pooling == "nodes":
            sub = self._node_features(nodes, self._adm_spans())
        elif self.use_adm:
            sub = components
        else:
            sub = self._sub_features(nodes, self._adm_spans())
        matrices = self.map_matrices[...].astype(self.dtype)
        actions = jnp.einsum("bkf,kfo->bko", sub, matrices) + self.map_bias[...]
        return actions.reshape(nodes.shape[0], -1, self.action_features)

    def __call__(
        self, inputs: dict[str, jax.Array], *, train: bool, key: jax.Array | None = None
    ) -> dict[str, jax.Array]:
        """Runs DeRe-GRL.

        Args:
            inputs: the output of `prepare`.
            train: enables dropout.
            key: dropout key; needed when `train` and the dropout rate is non-zero.

        Returns:
            "logits" (batch, C) float32; "actions" (batch, N, D) the N = components x M
            action features; "rrm_weights" (batch, N) float32 (with RRM); "au_logits"
            (batch, num_aus) float32 (with `weight_au` > 0); "au_targets", "au_mask"
            passed through from `prepare` for the loss; with `weight_rec` > 0
            "reconstruction" (batch, groups, 2H) float32 and "sub_features", its targets.
        """
        adjacency, _ = self.adjacency()
        nodes = self.low_stream(inputs["low"].astype(self.dtype), adjacency)
        if self.high_stream is not None:
            high = self.high_stream(inputs["high"].astype(self.dtype), adjacency)
            nodes = jnp.concatenate([nodes, high], axis=-1)
        nodes = nnx.relu(self.fuse(nodes))
        components = self._sub_features(nodes, self.component_ranges)
        actions = self._actions(nodes, components)
        flat = actions.reshape(actions.shape[0], -1)
        outputs = {
            "actions": actions,
            "au_targets": inputs["au_targets"],
            "au_mask": inputs["au_mask"],
        }
        if self.use_rrm:
            weights = jax.nn.softmax(self.rrm_scores(flat).astype(jnp.float32), axis=-1)
            alpha = weights.astype(self.dtype)
            weighted = jnp.einsum("bn,bnd->bd", alpha, actions)
            first, second = self.relation_first(actions), self.relation_second(actions)
            relations = nnx.relu(first[:, :, None, :] + second[:, None, :, :])
            relation = jnp.einsum("bn,bm,bnmr->br", alpha, alpha, relations)
            features = jnp.concatenate([weighted, relation], axis=-1)
            outputs["rrm_weights"] = weights
        else:
            features = flat
        features = self.dropout(features, deterministic=not train, rngs=key)
        outputs["logits"] = self.classifier(features).astype(jnp.float32)
        if self.au_head is not None:
            outputs["au_logits"] = self.au_head(flat).astype(jnp.float32)
        if self.decoder is not None:
            num_groups = components.shape[1]
            if self.use_rrm:
                # Times N: a uniform weighting leaves the actions as they are.
                scale = (weights * weights.shape[-1]).astype(self.dtype)[..., None]
                actions = actions * scale
            grouped = actions.reshape(actions.shape[0], num_groups, -1)
            outputs["reconstruction"] = self.decoder(grouped).astype(jnp.float32)
            outputs["sub_features"] = components.astype(jnp.float32)
        return outputs

    def loss(
        self, outputs: dict[str, jax.Array], labels: jax.Array
    ) -> tuple[jax.Array, dict[str, jax.Array]]:
        """CE + weight_au * AU loss + weight_rec * reconstruction loss; terms {"ce"} and,
        with the AU head, {"au"}, with the decoder, {"rec"} (unweighted)."""
        ce = cross_entropy(outputs["logits"], labels, label_smoothing=self.label_smoothing)
        total, terms = ce, {"ce": ce}
        if self.au_head is not None:
            au = au_loss(outputs["au_logits"], outputs["au_targets"], outputs["au_mask"])
            total, terms["au"] = total + self.weight_au * au, au
        if self.decoder is not None:
            rec = reconstruction_loss(outputs["reconstruction"], outputs["sub_features"])
            total, terms["rec"] = total + self.weight_rec * rec, rec
        return total, terms

    # -- what the trained model shows ------------------------------------------------

    def group_names(self) -> tuple[str, ...]:
        """Names of the action groups: the components, or "face k" without ADM."""
        if self.use_adm:
            return self.component_names
        return tuple(f"face {k + 1}" for k in range(len(self.component_names)))

    def summaries(self, inputs: dict[str, jax.Array]) -> dict[str, jax.Array]:
        """The RRM weights of each sample, (batch, groups, M), with RRM; the learned
        adjacency softmax(relu(E E^T)), (68, 68), with a learnable adjacency (for
        `mer_jax.evaluate.figures`)."""
        out = {}
        if self.use_rrm:
            weights = self(inputs, train=False)["rrm_weights"]
            out["rrm_weights"] = weights.reshape(weights.shape[0], -1, self.num_actions)
        _, learned = self.adjacency()
        if learned is not None:
            out["adjacency"] = learned
        return out
