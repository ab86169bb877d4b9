"""regularize(): exact counts over the zoo, selection rules, freeze policy, error cases."""

import keras
import numpy as np
import pytest

from backbone_regularizer.components.regularizer import RegularizationSpec, regularize, verify
from tests import zoo

L2 = RegularizationSpec(l2=1e-4)


def regularized_by_kind(report):
    return {k: v["regularized"] for k, v in report.counts["by_kind"].items() if v["regularized"]}


@pytest.mark.parametrize(
    "build, expected, skipped",
    [
        # 35 Conv2D + 1 Dense kernels, 17 DepthwiseConv2D kernels (variable `kernel`).
        (zoo.mobilenet_v2, {"kernel": 36, "depthwise": 17}, 105),
        # 65 Conv2D + 1 Dense, 16 depthwise; the stem Normalization has no trainable weight.
        (zoo.efficientnet_b0, {"kernel": 66, "depthwise": 16}, 131),
        # 18 LayerScale weights have no regularizer slot: skipped with a reason.
        (zoo.convnext_tiny, {"kernel": 59}, 123),
        (zoo.nested_backbone_with_head, {"kernel": 36, "depthwise": 17}, 105),
        # One shared Dense called twice: its kernel counted once.
        (zoo.shared_layer, {"kernel": 2}, 2),
        # Embedding, LSTM/GRU/SimpleRNN kernel + recurrent kernel through the cell, Dense.
        (zoo.text_rnn, {"embeddings": 1, "kernel": 4, "recurrent": 3}, 4),
        # query/key/value/output EinsumDense of the attention + the Dense.
        (zoo.attention_block, {"kernel": 5}, 7),
        (zoo.separable_and_transposes, {"kernel": 2, "depthwise": 3, "pointwise": 2}, 5),
        # Nested Sequential, Bidirectional (forward + backward cells), TimeDistributed.
        (zoo.sequential_blocks, {"kernel": 4, "recurrent": 2}, 6),
    ],
)
def test_zoo_counts_and_verification(build, expected, skipped):
    model = build()
    report = regularize(model, L2)
    assert regularized_by_kind(report) == expected
    assert len(report.skipped) == skipped
    assert len({w["path"] for w in report.regularized}) == len(report.regularized)
    assert len(model.losses) == sum(expected.values())
    assert verify(model, report).passed


def test_convnext_layerscale_is_skipped_with_reason_unless_selected():
    report = regularize(zoo.convnext_tiny(), L2)
    unslotted = [w for w in report.skipped if w["slot"] is None]
    assert len(unslotted) == 18
    assert {w["layer_type"] for w in unslotted} == {"LayerScale"}
    assert {w["kind"] for w in unslotted} == {"gamma"}  # the variable's own name
    assert all("no serializable regularizer attribute" in w["reason"] for w in unslotted)
    # Selected by kind (and class, to leave the LayerNorm gammas out), the plan carries them.
    model = zoo.convnext_tiny()
    spec = RegularizationSpec(l2=1e-4, extra_kinds=("gamma",), layer_types=("LayerScale",))
    report = regularize(model, spec)
    assert len(report.regularized) == 18
    assert {w["slot"] for w in report.regularized} == {None}
    assert len(model.losses) == 18
    assert verify(model, report).passed


def test_attribute_alone_is_a_no_op_which_is_why_we_set_the_variable():
    model = zoo.shared_layer()
    model.get_layer("out").kernel_regularizer = keras.regularizers.L2(1e-4)
    assert model.losses == []
    regularize(model, L2)
    assert len(model.losses) == 2


def test_bias_and_norm_only_when_asked():
    model = zoo.attention_block()
    report = regularize(model, RegularizationSpec(l2=1e-4, include_bias=True, include_norm=True))
    assert regularized_by_kind(report) == {"kernel": 5, "bias": 5, "gamma": 1, "beta": 1}
    assert verify(model, report).passed


def test_include_exclude_and_layer_types():
    report = regularize(zoo.text_rnn(), RegularizationSpec(l2=1e-4, include=("lstm", "gru")))
    assert [w["path"] for w in report.regularized] == [
        "text/lstm/lstm_cell/kernel",
        "text/lstm/lstm_cell/recurrent_kernel",
        "text/gru/gru_cell/kernel",
        "text/gru/gru_cell/recurrent_kernel",
    ]
    report = regularize(zoo.text_rnn(), RegularizationSpec(l2=1e-4, exclude=("cell",)))
    assert [w["path"] for w in report.regularized] == ["text/embed/embeddings", "text/out/kernel"]
    report = regularize(zoo.mobilenet_v2(), RegularizationSpec(l2=1e-4, layer_types=("Dense",)))
    assert [w["path"] for w in report.regularized] == ["mobilenetv2_0.35_32/predictions/kernel"]


def test_attention_projections_follow_their_governing_layer():
    # MultiHeadAttention rebuilds its projections from its own config: they are selected as one.
    report = regularize(zoo.attention_block(), RegularizationSpec(l2=1e-4, exclude=("mha",)))
    assert [w["path"] for w in report.regularized] == ["attention/ffn/kernel"]


def test_l1_and_l1l2_penalties_match_numpy():
    model = zoo.shared_layer()
    report = regularize(model, RegularizationSpec(l1=1e-3, l2=1e-2))
    assert report.regularizer["class_name"] == "L1L2"
    expected = sum(
        1e-3 * np.abs(v.numpy()).sum() + 1e-2 * np.square(v.numpy()).sum()
        for v in (model.get_layer("shared").kernel, model.get_layer("out").kernel)
    )
    assert float(sum(model.losses)) == pytest.approx(expected, rel=1e-6)


def test_batchnorm_frozen_by_default_and_frozen_penalties_reported():
    model = zoo.mobilenet_v2(include_top=False)
    report = regularize(model, RegularizationSpec(l2=1e-4, include_norm=True))
    bns = [x for x in model._flatten_layers() if isinstance(x, keras.layers.BatchNormalization)]
    assert len(bns) == 52 and not any(x.trainable for x in bns)
    assert report.counts["regularized_frozen"] == 104  # gamma + beta of 52 frozen BN layers
    assert len(model.losses) == 52  # only the 35 + 17 trainable kernels reach the loss
    verification = verify(model, report)
    assert verification.penalty["frozen_not_in_loss"] > 0


def test_freeze_until_and_fraction():
    model = zoo.mobilenet_v2(include_top=False)
    report = regularize(model, RegularizationSpec(l2=1e-4, freeze_until="block_16_expand"))
    assert not model.get_layer("block_15_project").trainable
    assert model.get_layer("block_16_expand").trainable
    # block_16 expand, depthwise and project, then the final Conv_1.
    assert report.counts["regularized_trainable"] == 4
    assert report.counts["regularized_frozen"] == 52 - 4
    assert len(model.losses) == 4
    model = zoo.shared_layer()
    report = regularize(model, RegularizationSpec(l2=1e-4, freeze_fraction=0.5))
    assert report.frozen_layers == ["shared_model/shared"]
    assert len(model.losses) == 1


@pytest.mark.parametrize(
    "spec, message",
    [
        (RegularizationSpec(l2=1e-4, include=("no_such_layer",)), "matches no layer"),
        (RegularizationSpec(l2=1e-4, exclude=("zzz",)), "matches no layer"),
        (RegularizationSpec(l2=1e-4, layer_types=("Conv3D",)), "No weight matched"),
        (RegularizationSpec(l2=1e-4, freeze_until="nope"), "freeze_until"),
    ],
)
def test_selection_errors(spec, message):
    with pytest.raises(ValueError, match=message):
        regularize(zoo.shared_layer(), spec)


def test_unbuilt_model_is_an_error():
    with pytest.raises(ValueError, match="Expected a built Keras model"):
        regularize(keras.Sequential([keras.layers.Dense(2)]), L2)


def test_preexisting_regularizer_is_recorded_and_replaced():
    inputs = keras.Input((4,))
    outputs = keras.layers.Dense(2, kernel_regularizer=keras.regularizers.L1(0.5), name="d")(inputs)
    model = keras.Model(inputs, outputs, name="pre")
    report = regularize(model, L2)
    assert report.preexisting == [
        {
            "path": "pre/d/kernel",
            "key": "0/1[0]",  # second layer of the root (after the InputLayer), first variable
            "regularizer": keras.regularizers.serialize(keras.regularizers.L1(0.5)),
            "replaced": True,
        }
    ]
    assert model.get_layer("d").kernel.regularizer.get_config() == {"l2": 1e-4}
    assert verify(model, report).passed


@keras.saving.register_keras_serializable(package="zoo_test")
class Scale(keras.layers.Layer):
    """A custom layer with its own regularizer slot, unknown to any table."""

    def __init__(self, scale_regularizer=None, **kwargs):
        super().__init__(**kwargs)
        self.scale_regularizer = keras.regularizers.get(scale_regularizer)

    def build(self, shape):
        self.scale = self.add_weight(
            shape=(shape[-1],), name="scale", regularizer=self.scale_regularizer
        )

    def call(self, x):
        return x * self.scale

    def get_config(self):
        return {
            **super().get_config(),
            "scale_regularizer": keras.regularizers.serialize(self.scale_regularizer),
        }


def scale_model():
    inputs = keras.Input((3,))
    x = Scale(name="s")(inputs)
    return keras.Model(inputs, keras.layers.Dense(2, name="d")(x), name="custom")


def test_custom_layer_slot_found_by_the_general_rule():
    report = regularize(scale_model(), L2)
    assert [w["path"] for w in report.regularized] == ["custom/d/kernel"]
    skipped = {w["path"]: w["reason"] for w in report.skipped}
    assert "is not among the targeted kinds" in skipped["custom/s/scale"]

    model = scale_model()
    report = regularize(model, RegularizationSpec(l2=1e-4, extra_kinds=("scale",)))
    assert [w["path"] for w in report.regularized] == ["custom/s/scale", "custom/d/kernel"]
    assert model.get_layer("s").get_config()["scale_regularizer"]["class_name"] == "L2"
    assert verify(model, report).passed


def test_a_rejected_spec_leaves_the_model_untouched():
    model = zoo.mobilenet_v2(include_top=False)
    with pytest.raises(ValueError, match="freeze_until"):
        regularize(model, RegularizationSpec(l2=1e-4, freeze_until="no_such_layer"))
    assert model.losses == []
    assert all(layer.trainable for layer in model._flatten_layers())
