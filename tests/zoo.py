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
