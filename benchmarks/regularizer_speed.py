"""In-place `regularize` vs the 2019 rebuild, and the component path vs a bare load + save.

Both comparisons run in one process on the same machine; each number is the median of
`repeats` runs and the result is stated as a ratio. Models: keras.applications with
weights=None at 224x224 (nothing is downloaded).
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import keras

from benchmarks.legacy_2019 import add_regularization_2019
from components.regularizer import RegularizationSpec, capture_baseline, regularize
from components.regularizer.workflow import regularize_file

MODELS = {
    "ResNet50": keras.applications.ResNet50,
    "MobileNetV2": keras.applications.MobileNetV2,
    "EfficientNetB0": keras.applications.EfficientNetB0,
}
SPEC = RegularizationSpec(l2=1e-4)


def _kerashub_resnet50(weights=None, input_shape=(224, 224, 3)) -> keras.Model:
    """KerasHub's ResNet backbone with the ResNet-50 configuration, randomly initialised
    (what ``Backbone.from_preset("resnet_50_imagenet")`` builds, without the download)."""
    import keras_hub

    return keras_hub.models.ResNetBackbone(
        input_conv_filters=[64],
        input_conv_kernel_sizes=[7],
        stackwise_num_filters=[64, 128, 256, 512],
        stackwise_num_blocks=[3, 4, 6, 3],
        stackwise_num_strides=[1, 2, 2, 2],
        block_type="bottleneck_block",
        image_shape=input_shape,
    )


# The component path also runs on a KerasHub backbone, whose penalties only the saved plan
# carries (the 2019 rebuild has no meaning there: it rebuilds from the layers' configs).
COMPONENT_MODELS = {**MODELS, "KerasHub ResNetBackbone (ResNet-50)": _kerashub_resnet50}


def _median_seconds(fn, repeats: int, setup=lambda: None) -> float:
    """Median wall time of ``fn(setup())``; ``setup`` runs outside the timed region."""
    times = []
    for _ in range(repeats):
        arg = setup()
        start = time.perf_counter()
        fn(arg)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _build(name: str) -> keras.Model:
    return COMPONENT_MODELS[name](weights=None, input_shape=(224, 224, 3))


def attach_vs_2019(repeats: int = 3) -> list[dict]:
    """Time attaching regularizers in place vs the 2019 JSON rebuild + weights reload.

    The fingerprint (probe predictions, weights checksum) is taken outside the timed region:
    the 2019 method takes none, so neither side pays for it.
    """
    rows = []
    for name in MODELS:

        def fresh(name=name):
            model = _build(name)
            return model, capture_baseline(model, SPEC.probe_batch_size)

        ours = _median_seconds(lambda mb: regularize(mb[0], SPEC, mb[1]), repeats, fresh)
        legacy = _median_seconds(add_regularization_2019, repeats, lambda n=name: _build(n))
        rows.append(
            {"model": name, "regularize_s": ours, "legacy_2019_s": legacy, "speedup": legacy / ours}
        )
    return rows


def component_vs_bare(repeats: int = 3, models=None) -> list[dict]:
    """Time load + regularize + verify + save + reload + verify vs a bare load_model + save."""
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for name in models or COMPONENT_MODELS:
            src = tmp / f"{name}.keras"
            _build(name).save(src)

            def bare(_, src=src):
                keras.saving.load_model(src, compile=False).save(tmp / "bare.keras")

            def component(_, src=src):
                regularize_file(src, tmp / "reg.keras", SPEC)

            bare(None)  # warm-up: the first load pays one-off costs, on both sides
            component(None)
            bare_s = _median_seconds(bare, repeats)
            ours_s = _median_seconds(component, repeats)
            rows.append(
                {"model": name, "bare_s": bare_s, "component_s": ours_s, "ratio": ours_s / bare_s}
            )
    return rows
