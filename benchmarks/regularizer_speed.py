"""What regularizing costs: attaching vs the 2019 rebuild, the fingerprint vs its parts, and the
component path vs a bare load + save.

Every comparison runs in one process on the same machine; each number is the median of
`repeats` runs (the two sides of a ratio alternate) and the result is stated as a ratio.
Models: keras.applications with weights=None at 224x224, and a KerasHub ResNet-50 backbone
built without downloads.

`python -m benchmarks.regularizer_speed [--repeats N]` prints these tables alone; `make bench`
puts them in benchmarks/RESULTS.md with the others.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import keras
import tensorflow as tf

from backbone_regularizer.components.regularizer import (
    RegularizationSpec,
    capture_baseline,
    regularize,
)
from backbone_regularizer.components.regularizer.fingerprint import predict_probe, probe_batch
from backbone_regularizer.components.regularizer.keras_file import weights_sha256
from backbone_regularizer.components.regularizer.workflow import regularize_file
from benchmarks import machine
from benchmarks.legacy_2019 import add_regularization_2019
from benchmarks.markdown import table, verdict

MODELS = {
    "ResNet50": keras.applications.ResNet50,
    "MobileNetV2": keras.applications.MobileNetV2,
    "EfficientNetB0": keras.applications.EfficientNetB0,
}
SPEC = RegularizationSpec(l2=1e-4)
INPUT_SHAPE = (224, 224, 3)
COMPONENT_TARGET, COMPONENT_STRETCH, FINGERPRINT_TARGET = 2.0, 1.5, 1.5


def _kerashub_resnet50(weights=None, input_shape=INPUT_SHAPE) -> keras.Model:
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


def _build(builder) -> keras.Model:
    return builder(weights=None, input_shape=INPUT_SHAPE)


def _seconds(fn, arg=None) -> float:
    start = time.perf_counter()
    fn(arg)
    return time.perf_counter() - start


def _alternating(repeats: int, **sides) -> dict[str, float]:
    """Median seconds of each side, ``{name: (fn, setup)}``: every repeat runs each side once,
    in turn; ``setup()`` runs outside the timed region and its result is ``fn``'s argument."""
    times: dict[str, list[float]] = {name: [] for name in sides}
    for _ in range(repeats):
        for name, (fn, setup) in sides.items():
            times[name].append(_seconds(fn, setup()))
    return {name: statistics.median(t) for name, t in times.items()}


def attach_vs_2019(repeats: int = 3, models: dict | None = None) -> list[dict]:
    """Attaching alone, the documented call ``regularize(model, spec)``, and the 2019 rebuild.

    Attaching alone is given a fingerprint taken outside the timed region; the full call takes
    it itself (one probe forward pass and one SHA-256 pass over the weights), as it does when a
    user calls it. The 2019 method takes no fingerprint and verifies nothing.
    """
    rows = []
    for name, builder in (models or MODELS).items():

        def fresh(builder=builder):
            model = _build(builder)
            return model, capture_baseline(model, SPEC.probe_batch_size)

        regularize(_build(builder), SPEC)  # warm-up: a process's first call pays one-off costs
        t = _alternating(
            repeats,
            attach=(lambda mb: regularize(mb[0], SPEC, mb[1]), fresh),
            full=(lambda model: regularize(model, SPEC), lambda b=builder: _build(b)),
            legacy=(add_regularization_2019, lambda b=builder: _build(b)),
        )
        rows.append(
            {
                "model": name,
                "attach_s": t["attach"],
                "full_call_s": t["full"],
                "legacy_2019_s": t["legacy"],
                "attach_speedup": t["legacy"] / t["attach"],
                "full_call_speedup": t["legacy"] / t["full"],
            }
        )
    return rows


def fingerprint_vs_parts(repeats: int = 3, models: dict | None = None) -> list[dict]:
    """``capture_baseline`` vs one compiled forward pass of the probe batch plus one SHA-256
    pass over the weights, each timed alone on the same model.

    "Compiled" is ``tf.function(lambda x: model(x, training=False))``: ``compiled_s`` is a call
    of an already traced function, ``compile_s`` the first call of a fresh one (tracing and
    graph optimisation included), which is what one compiled pass costs on a model seen once.
    ``eager_s`` is the eager forward pass the fingerprint uses.
    """
    return [_fingerprint_row(name, _build(b), repeats) for name, b in (models or MODELS).items()]


def _fingerprint_row(name: str, model: keras.Model, repeats: int) -> dict:
    batch = probe_batch(model, SPEC.probe_batch_size)
    capture_baseline(model, SPEC.probe_batch_size)  # warm-up

    def traced(_):
        fn = tf.function(lambda x: model(x, training=False))
        fn(batch)
        return fn

    compiled = traced(None)
    none = lambda: None  # noqa: E731
    t = _alternating(
        repeats,
        fingerprint=(lambda _: capture_baseline(model, SPEC.probe_batch_size), none),
        eager=(lambda _: predict_probe(model, batch), none),
        compiled=(lambda _: compiled(batch).numpy(), none),
        compile=(traced, none),
        sha256=(lambda _: weights_sha256(model), none),
    )
    return {
        "model": name,
        "fingerprint_s": t["fingerprint"],
        "eager_forward_s": t["eager"],
        "compiled_forward_s": t["compiled"],
        "compile_and_forward_s": t["compile"],
        "sha256_s": t["sha256"],
        "ratio_to_compiled": t["fingerprint"] / (t["compiled"] + t["sha256"]),
        "ratio_to_compile_and_forward": t["fingerprint"] / (t["compile"] + t["sha256"]),
    }


def component_vs_bare(repeats: int = 3, models: dict | None = None) -> list[dict]:
    """Time load + regularize + verify + save + reload + verify vs a bare load_model + save.

    Also timed, alone: the floor of the component path, the two loads and two eager probe
    passes no check can do without (the input, and the written file that check 5 runs). The
    floor loads the input twice: the written file is the same weights and architecture.
    """
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for name, builder in (models or COMPONENT_MODELS).items():
            src = tmp / "src.keras"
            _build(builder).save(src)

            def bare(_, src=src):
                keras.saving.load_model(src, compile=False).save(tmp / "bare.keras")

            def component(_, src=src):
                regularize_file(src, tmp / "reg.keras", SPEC)

            def floor(_, src=src):
                for _ in range(2):
                    model = keras.saving.load_model(src, compile=False)
                    predict_probe(model, probe_batch(model, SPEC.probe_batch_size))

            bare(None)  # warm-up: the first load pays one-off costs, on all sides
            component(None)
            floor(None)
            none = lambda: None  # noqa: E731
            t = _alternating(
                repeats, bare=(bare, none), component=(component, none), floor=(floor, none)
            )
            rows.append(
                {
                    "model": name,
                    "bare_s": t["bare"],
                    "component_s": t["component"],
                    "floor_s": t["floor"],
                    "ratio": t["component"] / t["bare"],
                    "floor_ratio": t["floor"] / t["bare"],
                }
            )
    return rows


def tables(attach: list[dict], fingerprint: list[dict], component: list[dict]) -> list[str]:
    """The three tables, as lines of markdown for benchmarks/RESULTS.md."""
    return [
        "**`regularize` vs the 2019 rebuild** (224x224, weights=None): attaching alone (the "
        "fingerprint taken beforehand) and the documented call `regularize(model, spec)`, "
        "which takes the fingerprint itself; the 2019 rebuild verifies nothing",
        "",
        table(
            [
                "model",
                "attach only",
                "full call",
                "2019 rebuild",
                "attach only vs 2019",
                "full call vs 2019",
            ],
            [
                [
                    r["model"],
                    f"{r['attach_s'] * 1e3:.1f} ms",
                    f"{r['full_call_s'] * 1e3:.0f} ms",
                    f"{r['legacy_2019_s'] * 1e3:.0f} ms",
                    f"{r['attach_speedup']:.0f}x",
                    f"{r['full_call_speedup']:.1f}x",
                ]
                for r in attach
            ],
        ),
        "",
        "**Fingerprint** (`capture_baseline`: probe predictions + weights SHA-256) vs one compiled "
        "forward pass of the probe batch + one SHA-256 pass, each alone (target <= "
        f"{FINGERPRINT_TARGET}x). Compiled = `tf.function`; already traced, and first call "
        "of a fresh one (tracing included)",
        "",
        table(
            [
                "model",
                "fingerprint",
                "eager pass",
                "compiled pass",
                "trace + first pass",
                "SHA-256",
                "vs compiled + SHA",
                "vs trace + SHA",
                "verdict (compiled + SHA)",
            ],
            [
                [
                    r["model"],
                    f"{r['fingerprint_s'] * 1e3:.0f} ms",
                    f"{r['eager_forward_s'] * 1e3:.0f} ms",
                    f"{r['compiled_forward_s'] * 1e3:.0f} ms",
                    f"{r['compile_and_forward_s'] * 1e3:.0f} ms",
                    f"{r['sha256_s'] * 1e3:.0f} ms",
                    f"{r['ratio_to_compiled']:.2f}x",
                    f"{r['ratio_to_compile_and_forward']:.2f}x",
                    verdict(r["ratio_to_compiled"] <= FINGERPRINT_TARGET),
                ]
                for r in fingerprint
            ],
        ),
        "",
        "**Component path (load, regularize, checks 1-3, write, reload, checks 1-5) vs bare "
        f"`load_model` + `save`** (target <= {COMPONENT_TARGET}x, stretch {COMPONENT_STRETCH}x). "
        "Floor: two `load_model` + two eager probe passes alone, the part of the path that "
        "checking the written file cannot skip",
        "",
        table(
            [
                "model",
                "bare load+save",
                "component path",
                "floor",
                "ratio",
                "floor vs bare",
                "verdict",
            ],
            [
                [
                    r["model"],
                    f"{r['bare_s']:.2f} s",
                    f"{r['component_s']:.2f} s",
                    f"{r['floor_s']:.2f} s",
                    f"{r['ratio']:.2f}x",
                    f"{r['floor_ratio']:.2f}x",
                    verdict(r["ratio"] <= COMPONENT_TARGET)
                    + (" (and stretch)" if r["ratio"] <= COMPONENT_STRETCH else ""),
                ]
                for r in component
            ],
        ),
    ]


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    results = {
        "attach": attach_vs_2019(args.repeats),
        "fingerprint": fingerprint_vs_parts(args.repeats),
        "component": component_vs_bare(args.repeats),
    }
    print(f"Measured on: {machine.describe()}. Medians of {args.repeats} alternating runs.\n")
    print("\n".join(tables(results["attach"], results["fingerprint"], results["component"])))
    return results


if __name__ == "__main__":
    main()
