"""Tiny, randomly initialised KerasHub backbones (keras-hub 0.25.1) for the periphery tests:
BackboneLoader presets, --import / custom_modules, the Trainer head. Built from their
constructors; nothing downloaded. ``keras_hub`` is imported on first use only.
"""

from __future__ import annotations

import keras

# Regularizable kernels of `hub_resnet`: stem conv 1, stack 0 (one basic block, 64 -> 64,
# stride 1: no projection) 2, stack 1 (one basic block, 64 -> 16, stride 2) 2 + projection 1.
RESNET_KERNELS = 6
# BatchNormalization layers of `hub_resnet`: one after each of the 6 convolutions.
RESNET_BATCHNORMS = 6


def _hub():
    import keras_hub

    return keras_hub.models


def hub_resnet(image_shape=(32, 32, 3)) -> keras.Model:
    # keras-hub requires 64 filters in the first stack (and so in the stem).
    return _hub().ResNetBackbone(
        input_conv_filters=[64],
        input_conv_kernel_sizes=[3],
        stackwise_num_filters=[64, 16],
        stackwise_num_blocks=[1, 1],
        stackwise_num_strides=[1, 2],
        block_type="basic_block",
        image_shape=image_shape,
        name="resnet",
    )


def hub_vit(image_shape=(16, 16, 3)) -> keras.Model:
    return _hub().ViTBackbone(
        image_shape=image_shape,
        patch_size=8,
        num_layers=1,
        num_heads=2,
        hidden_dim=8,
        mlp_dim=16,
        name="vit",
    )


def hub_bert() -> keras.Model:
    return _hub().BertBackbone(
        vocabulary_size=50,
        num_layers=1,
        num_heads=2,
        hidden_dim=8,
        intermediate_dim=16,
        max_sequence_length=12,
        name="bert",
    )
