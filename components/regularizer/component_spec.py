"""TFX ComponentSpec of BackboneRegularizer: input/output channel keys and exec properties."""

from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter, ComponentSpec, ExecutionParameter

# The output's files (the Model artifact contract), under the names readers already use.
from backbone_regularizer.components.model_artifact import MODEL_FILE as MODEL_FILE
from backbone_regularizer.components.model_artifact import REPORT_FILE as REPORT_FILE

BACKBONE_KEY = "backbone"
MODEL_KEY = "model"
SPEC_KEY = "regularization_spec"  # canonical JSON of RegularizationSpec
SAFE_MODE_KEY = "safe_mode"  # int 0/1: bool exec properties crash the KFP v2 entrypoint
# JSON list of module names imported before loading, e.g. '["my_project.layers"]'. Optional
# and left out when empty, so pipelines without it keep their cache keys.
CUSTOM_MODULES_KEY = "custom_modules"

# Custom properties written on the output Model artifact (visible in ML Metadata lineage).
PROP_REGULARIZED = "num_regularized"
PROP_REGULARIZED_FROZEN = "num_regularized_frozen"
PROP_SKIPPED = "num_skipped"
PROP_WEIGHTS_SHA256 = "weights_sha256"
PROP_PENALTY = "penalty_at_init"
PROP_REGULARIZER = "regularizer"
PROP_VALIDATION_PASSED = "validation_passed"
PROP_SAFE_MODE = "loaded_with_safe_mode"
PROP_CUSTOM_MODULES = "custom_modules"  # JSON list: the modules imported before loading
PROP_KERAS_VERSION = "keras_version"
PROP_TF_VERSION = "tensorflow_version"


class BackboneRegularizerSpec(ComponentSpec):
    PARAMETERS = {
        SPEC_KEY: ExecutionParameter(type=str),
        SAFE_MODE_KEY: ExecutionParameter(type=int),
        CUSTOM_MODULES_KEY: ExecutionParameter(type=str, optional=True),
    }
    INPUTS = {BACKBONE_KEY: ChannelParameter(type=standard_artifacts.Model)}
    OUTPUTS = {MODEL_KEY: ChannelParameter(type=standard_artifacts.Model)}
