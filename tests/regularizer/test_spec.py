"""RegularizationSpec: validation errors name what was expected and what was received."""

import math

import keras
import pytest

from backbone_regularizer.components.regularizer import RegularizationSpec


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"l2": -1.0}, "Expected a finite number >= 0. Received: l2=-1.0"),
        ({"l2": math.nan}, "Received: l2=nan"),
        ({"l1": "0.1"}, "Received: l1='0.1'"),
        ({"l2": True}, "Received: l2=True"),
        ({}, "Expected a penalty"),
        ({"l1": 0.0, "l2": 0.0}, "Expected a penalty"),
        ({"l2": 1e-4, "include": "conv"}, "Expected a list of regular expressions"),
        ({"l2": 1e-4, "exclude": ("([",)}, "Expected valid regular expressions"),
        ({"l2": 1e-4, "include_bias": 1}, "Expected a bool"),
        ({"l2": 1e-4, "freeze_until": "a", "freeze_fraction": 0.5}, "at most one of"),
        ({"l2": 1e-4, "freeze_fraction": 1.5}, "Expected a number in \\[0, 1\\]"),
        ({"l2": 1e-4, "probe_batch_size": 0}, "Expected an int in \\[1, 256\\]"),
        ({"custom": {"class_name": "NoSuchRegularizer", "config": {}}}, "Unknown regularizer"),
        ({"custom": "L2"}, "Expected a serialized Keras regularizer"),
        ({"l2": 1e-4, "custom": {"class_name": "L2", "config": {"l2": 1.0}}}, "not both"),
    ],
)
def test_invalid_specs(kwargs, message):
    with pytest.raises(ValueError, match=message):
        RegularizationSpec(**kwargs)


def test_json_round_trip_is_canonical():
    spec = RegularizationSpec(l1=1e-5, l2=1e-4, include=("block",), include_bias=True)
    assert RegularizationSpec.from_json(spec.to_json()) == spec
    assert spec.to_json() == RegularizationSpec.from_json(spec.to_json()).to_json()
    assert spec.regularizer_summary() == "L1L2(l1=1e-05, l2=0.0001)"


def test_unknown_keys_are_rejected():
    with pytest.raises(ValueError, match="Unknown regularization spec keys: \\['l3'\\]"):
        RegularizationSpec.from_dict({"l2": 1e-4, "l3": 1.0})
    with pytest.raises(ValueError, match="Expected the regularization spec as JSON"):
        RegularizationSpec.from_json("{l2: 1}")


def test_registered_custom_regularizer_is_accepted():
    @keras.saving.register_keras_serializable(package="spec_test")
    class Capped(keras.regularizers.Regularizer):
        def __init__(self, factor=0.1):
            self.factor = factor

        def __call__(self, x):
            return self.factor * keras.ops.sum(keras.ops.minimum(keras.ops.abs(x), 1.0))

        def get_config(self):
            return {"factor": self.factor}

    spec = RegularizationSpec(custom=keras.regularizers.serialize(Capped(0.5)))
    assert isinstance(spec.build_regularizer(), Capped)
    assert spec.regularizer_summary() == "Capped(factor=0.5)"
