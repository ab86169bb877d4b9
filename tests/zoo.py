"""Small models covering every slot shape the regularizer must handle (built offline)."""

from __future__ import annotations

import keras

SMALL = (32, 32, 3)


def mobilenet_v2(include_top: bool = True) -> keras.Model:
    return keras.applications.MobileNetV2(
        weights=None, input_shape=SMALL, alpha=0.35, include_top=include_top, classes=10
    )


def efficientnet_b0() -> keras.Model:
    return keras.applications.EfficientNetB0(weights=None, input_shape=SMALL, classes=10)


def convnext_tiny() -> keras.Model:
    return keras.applications.ConvNeXtTiny(weights=None, input_shape=SMALL, classes=10)


def nested_backbone_with_head() -> keras.Model:
    base = mobilenet_v2(include_top=False)
    inputs = keras.Input(SMALL)
    x = base(inputs, training=False)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dropout(0.2)(x)
    outputs = keras.layers.Dense(5, name="head")(x)
    return keras.Model(inputs, outputs, name="classifier")


def shared_layer() -> keras.Model:
    inputs = keras.Input((8,))
    shared = keras.layers.Dense(8, name="shared")
    x = shared(shared(inputs))
    return keras.Model(inputs, keras.layers.Dense(2, name="out")(x), name="shared_model")


def text_rnn() -> keras.Model:
    inputs = keras.Input((12,), dtype="int32")
    x = keras.layers.Embedding(50, 8, name="embed")(inputs)
    x = keras.layers.LSTM(8, return_sequences=True, name="lstm")(x)
    x = keras.layers.GRU(8, return_sequences=True, name="gru")(x)
    x = keras.layers.SimpleRNN(4, name="rnn")(x)
    return keras.Model(inputs, keras.layers.Dense(2, name="out")(x), name="text")


def attention_block() -> keras.Model:
    inputs = keras.Input((6, 16))
    x = keras.layers.MultiHeadAttention(2, 8, name="mha")(inputs, inputs)
    x = keras.layers.LayerNormalization(name="ln")(x + inputs)
    return keras.Model(inputs, keras.layers.Dense(4, name="ffn")(x), name="attention")


def separable_and_transposes() -> keras.Model:
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.SeparableConv2D(4, 3, name="sep")(inputs)
    x = keras.layers.Conv2DTranspose(4, 3, name="deconv")(x)
    x = keras.layers.DepthwiseConv2D(3, name="dw")(x)
    x = keras.layers.Reshape((-1, 4))(x)
    x = keras.layers.Conv1D(4, 3, name="conv1d")(x)
    x = keras.layers.SeparableConv1D(4, 3, name="sep1d")(x)
    return keras.Model(inputs, x, name="convs")


def sequential_blocks() -> keras.Model:
    """Nested Sequential blocks, a Bidirectional LSTM and a TimeDistributed Dense."""
    block = keras.Sequential(
        [keras.layers.Conv1D(4, 3, padding="same", name="c1"), keras.layers.BatchNormalization()],
        name="block",
    )
    inputs = keras.Input((10, 3))
    x = block(inputs)
    x = keras.layers.Bidirectional(keras.layers.LSTM(4, return_sequences=True), name="bi")(x)
    x = keras.layers.TimeDistributed(keras.layers.Dense(2, name="td_dense"), name="td")(x)
    return keras.Model(inputs, x, name="blocks")


# Tiny, randomly initialised KerasHub backbones (keras-hub 0.25.1), built from their
# constructors: no preset, nothing downloaded. `keras_hub` is imported on first use only.
def _hub():
    import keras_hub

    return keras_hub.models


def hub_resnet() -> keras.Model:
    # keras-hub requires 64 filters in the first stack (and so in the stem).
    return _hub().ResNetBackbone(
        input_conv_filters=[64],
        input_conv_kernel_sizes=[3],
        stackwise_num_filters=[64, 16],
        stackwise_num_blocks=[1, 1],
        stackwise_num_strides=[1, 2],
        block_type="basic_block",
        image_shape=(32, 32, 3),
        name="resnet",
    )


def hub_densenet() -> keras.Model:
    return _hub().DenseNetBackbone(
        stackwise_num_repeats=[1, 1], image_shape=(32, 32, 3), growth_rate=4, name="densenet"
    )


def hub_vit() -> keras.Model:
    return _hub().ViTBackbone(
        image_shape=(16, 16, 3),
        patch_size=8,
        num_layers=1,
        num_heads=2,
        hidden_dim=8,
        mlp_dim=16,
        name="vit",
    )


def hub_deit() -> keras.Model:
    return _hub().DeiTBackbone(
        image_shape=(16, 16, 3),
        patch_size=8,
        num_layers=1,
        num_heads=2,
        hidden_dim=8,
        intermediate_dim=16,
        name="deit",
    )


def hub_dinov2() -> keras.Model:
    return _hub().DINOV2Backbone(
        patch_size=8,
        num_layers=1,
        hidden_dim=8,
        num_heads=2,
        intermediate_dim=16,
        image_shape=(16, 16, 3),
        position_embedding_shape=(16, 16, 3),
        name="dinov2",
    )


TEXT = {"vocabulary_size": 50, "hidden_dim": 8, "intermediate_dim": 16}


def hub_bert() -> keras.Model:
    return _hub().BertBackbone(
        num_layers=1, num_heads=2, max_sequence_length=12, name="bert", **TEXT
    )


def hub_distilbert() -> keras.Model:
    return _hub().DistilBertBackbone(
        num_layers=1, num_heads=2, max_sequence_length=12, name="distilbert", **TEXT
    )


def hub_gpt2() -> keras.Model:
    return _hub().GPT2Backbone(
        num_layers=1, num_heads=2, max_sequence_length=12, name="gpt2", **TEXT
    )


def hub_llama() -> keras.Model:
    return _hub().LlamaBackbone(
        num_layers=1, num_query_heads=2, num_key_value_heads=1, name="llama", **TEXT
    )


def hub_vgg() -> keras.Model:
    # No name given: the root's auto-generated name changes when the file is reloaded.
    return _hub().VGGBackbone(
        stackwise_num_repeats=[1, 1], stackwise_num_filters=[4, 8], image_shape=(16, 16, 3)
    )


def hub_mit() -> keras.Model:
    # SegFormer's encoder: its inner Dense/Conv2D layers are unnamed, so reloading renames
    # them (`dense_4` -> `dense_21`); only their positions identify the weights.
    return _hub().MiTBackbone(
        layerwise_depths=[1, 1],
        num_layers=2,
        layerwise_num_heads=[1, 2],
        layerwise_sr_ratios=[2, 1],
        max_drop_path_rate=0.0,
        layerwise_patch_sizes=[7, 3],
        layerwise_strides=[4, 2],
        image_shape=(32, 32, 3),
        hidden_dims=[8, 16],
        name="mit",
    )


@keras.saving.register_keras_serializable(package="zoo")
class ScaledMLP(keras.Model):
    """A subclassed model: no symbolic inputs, layers rebuilt by ``__init__`` on load, and a
    weight of its own (``scale``) without any regularizer attribute."""

    def __init__(self, units: int = 4, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.hidden = keras.layers.Dense(units, name="hidden")
        self.out = keras.layers.Dense(2, name="out")

    def build(self, shape):
        self.scale = self.add_weight(shape=(shape[-1],), initializer="ones", name="scale")
        self.hidden.build(shape)
        self.out.build((None, self.units))

    def call(self, x):
        return self.out(self.hidden(x * self.scale))

    def get_config(self):
        return {**super().get_config(), "units": self.units}


def subclassed() -> keras.Model:
    model = ScaledMLP(name="scaled_mlp")
    model.build((None, 3))
    return model


def two_inputs() -> keras.Model:
    """A list of inputs: integer ids into a 7-word Embedding, and float features."""
    ids = keras.Input((None,), dtype="int32", name="ids")
    features = keras.Input((4,), name="features")
    x = keras.layers.GlobalAveragePooling1D()(keras.layers.Embedding(7, 4, name="embed")(ids))
    x = keras.layers.Concatenate()([x, features])
    return keras.Model([ids, features], keras.layers.Dense(2, name="out")(x), name="two_inputs")
