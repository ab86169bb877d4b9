"""The per-class guard: TFMA per-slice change thresholds on the label, and the classes to require.

The eval config built with the pipeline (``class_guard``) slices the metrics by ``label`` and
gives every label slice a change threshold: the candidate may lose at most ``max_drop``
accuracy against the baseline on any class. A slice TFMA never sees is never checked, though,
and a class the production model knew may have no evaluation example at all (a span without
it). At run time, once the production model's label map is known, ``require_classes`` names
each of its classes as a slice of its own, with the same threshold, in place of the wildcard:
TFMA reports a named slice without examples as missing and fails the validation, so such a
candidate is not blessed. (In place of, not beside: TFMA 0.47 checks a slice once per
matching spec and, when the same threshold fails twice, records the second spec as missing.)

>>> config = require_classes(eval_config, "label", [0, 1, 2])
"""

from __future__ import annotations

from collections.abc import Iterable

import tensorflow_model_analysis as tfma


def label_slice(label_key: str) -> tfma.SlicingSpec:
    """Every value of the label, one slice each."""
    return tfma.SlicingSpec(feature_keys=[label_key])


def class_guard(label_key: str, max_drop: float) -> tfma.PerSliceMetricThreshold:
    """A change threshold on every label slice: ``candidate - baseline >= -max_drop``."""
    return tfma.PerSliceMetricThreshold(
        slicing_specs=[label_slice(label_key)],
        threshold=tfma.MetricThreshold(
            change_threshold=tfma.GenericChangeThreshold(
                direction=tfma.MetricDirection.HIGHER_IS_BETTER,
                absolute={"value": -max_drop},
            )
        ),
    )


def has_guard(eval_config: tfma.EvalConfig, label_key: str) -> bool:
    """Whether ``eval_config`` holds a threshold on every label slice (``class_guard``)."""
    wildcard = label_slice(label_key)
    return any(
        wildcard in threshold.slicing_specs
        for spec in eval_config.metrics_specs
        for metric in spec.metrics
        for threshold in metric.per_slice_thresholds
    )


def require_classes(
    eval_config: tfma.EvalConfig, label_key: str, indices: Iterable[int]
) -> tfma.EvalConfig:
    """A copy of ``eval_config`` whose guard names each class in ``indices`` as a slice, in
    place of every label value.

    Without a guard (``class_guard``) in ``eval_config`` the copy is unchanged.
    """
    required = [
        tfma.SlicingSpec(feature_values={label_key: str(index)}) for index in sorted(indices)
    ]
    wildcard = label_slice(label_key)
    config = tfma.EvalConfig()
    config.CopyFrom(eval_config)
    for spec in config.metrics_specs:
        for metric in spec.metrics:
            for threshold in metric.per_slice_thresholds:
                if wildcard in threshold.slicing_specs:
                    kept = [s for s in threshold.slicing_specs if s != wildcard]
                    del threshold.slicing_specs[:]
                    threshold.slicing_specs.extend(kept + required)
    return config
