"""TFX ComponentSpec of BackboneLoader: output channel key, exec properties, custom properties."""

from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter, ComponentSpec, ExecutionParameter

BACKBONE_KEY = "backbone"

# Exec properties are strings only: bool/proto properties crash the KFP v2 entrypoint.
ARCHITECTURE_KEY = "architecture"  # keras.applications name, e.g. "MobileNetV2"
WEIGHTS_KEY = "weights"  # "imagenet", "none" or the URI of a weights file
INPUT_SHAPE_KEY = "input_shape"  # JSON, e.g. "[32, 32, 3]"
POOLING_KEY = "pooling"  # "none", "avg" or "max"
KWARGS_KEY = "kwargs"  # JSON object of extra constructor arguments, sorted keys
# A KerasHub preset (name, hub handle or directory URI) instead of `architecture`. Set only
# for presets, so existing pipelines keep their cache keys and compiled specs.
PRESET_KEY = "preset"
# The `weights` argument's default: "imagenet" for an architecture, "preset" for a preset.
DEFAULT_WEIGHTS = "default"

# Custom properties written on the output Model artifact (visible in ML Metadata lineage).
PROP_SOURCE = "source"
PROP_WEIGHTS_SHA256 = "weights_sha256"
PROP_PARAMETER_COUNT = "parameter_count"
PROP_ARCHITECTURE = "architecture"
PROP_INPUT_SHAPE = "input_shape"
PROP_KERAS_VERSION = "keras_version"
PROP_PRESET = "preset"  # presets only: the handle as given
PROP_KERAS_HUB_VERSION = "keras_hub_version"  # presets only


class BackboneLoaderSpec(ComponentSpec):
    PARAMETERS = {
        # architecture, pooling and kwargs are set for keras.applications, preset for KerasHub;
        # input_shape is optional for a preset.
        ARCHITECTURE_KEY: ExecutionParameter(type=str, optional=True),
        WEIGHTS_KEY: ExecutionParameter(type=str),
        INPUT_SHAPE_KEY: ExecutionParameter(type=str, optional=True),
        POOLING_KEY: ExecutionParameter(type=str, optional=True),
        KWARGS_KEY: ExecutionParameter(type=str, optional=True),
        PRESET_KEY: ExecutionParameter(type=str, optional=True),
    }
    INPUTS = {}
    OUTPUTS = {BACKBONE_KEY: ChannelParameter(type=standard_artifacts.Model)}
