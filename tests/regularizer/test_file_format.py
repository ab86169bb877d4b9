"""Files that load anywhere: plain Keras where the layer configs carry every penalty, the plan
envelope only where it is needed, the decision and its reasons in the report."""

import json
import os
import subprocess
import sys
import zipfile

import keras
import pytest

from backbone_regularizer.components.model_artifact import REPORT_FILE, publish, serving_dir
from backbone_regularizer.components.regularizer import (
    RegularizationSpec,
    VerificationError,
    regularize,
    regularize_file,
    save_regularized,
    verify,
    workflow,
)
from backbone_regularizer.components.regularizer.keras_file import read_config, replace_config
from backbone_regularizer.pipeline.trainer import load_regularized_base
from tests import zoo

L2 = RegularizationSpec(l2=1e-4)

CUSTOM = """
import keras


@keras.saving.register_keras_serializable(package="{package}")
class Clipped(keras.regularizers.Regularizer):
    def __init__(self, factor):
        self.factor = factor

    def __call__(self, x):
        return self.factor * keras.ops.sum(keras.ops.minimum(keras.ops.abs(x), 1.0))

    def get_config(self):
        return {{"factor": self.factor}}


@keras.saving.register_keras_serializable(package="{package}")
class ForgetfulDense(keras.layers.Dense):
    '''Takes `kernel_regularizer` and serializes it, but drops it when rebuilt from config.'''

    @classmethod
    def from_config(cls, config):
        return cls(**{{**config, "kernel_regularizer": None}})
"""

# Loads each file with keras alone and says what came back; fails if this package was imported.
FRESH = """
import json, sys
import keras
for module in sys.argv[2:]:
    __import__(module)
out = {}
for path in json.loads(sys.argv[1]):
    model = keras.saving.load_model(path)
    frozen = [l.name for l in model._flatten_layers() if not l.trainable and l._trainable_variables]
    out[path] = {
        "class": type(model).__name__,
        "terms": len(model.losses),
        "penalty": float(sum(float(x) for x in model.losses)),
        "frozen": len(frozen),
    }
ours = sorted(m for m in sys.modules if m.split(".")[0] == "backbone_regularizer")
assert not ours, ours
print(json.dumps(out))
"""


def load_in_fresh_process(paths, modules=(), pythonpath=None) -> dict:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    if pythonpath:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [pythonpath, env.get("PYTHONPATH")]))
    result = subprocess.run(
        [sys.executable, "-c", FRESH, json.dumps([str(p) for p in paths]), *modules],
        capture_output=True,
        text=True,
        env=env,
        cwd=pythonpath or os.getcwd(),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return {os.path.basename(k): v for k, v in json.loads(result.stdout.splitlines()[-1]).items()}


@pytest.fixture
def custom_package(tmp_path, monkeypatch, request):
    """A module registering a custom regularizer and a layer that forgets its regularizer."""
    package = f"fmt_{request.node.name.split('[')[0][-24:]}"
    root = tmp_path / "modules"
    (root / package).mkdir(parents=True)
    (root / package / "__init__.py").write_text(CUSTOM.format(package=package))
    monkeypatch.syspath_prepend(str(root))
    module = __import__(package)
    yield module, str(root)
    monkeypatch.delitem(sys.modules, package)
    for name in ("Clipped", "ForgetfulDense"):
        keras.saving.get_custom_objects().pop(f"{package}>{name}", None)


def file_class(path) -> str:
    return read_config(path)["class_name"]


def test_keras_penalties_on_functional_and_sequential_models_load_anywhere(tmp_path):
    """MobileNetV2 from keras.applications nested under a head (L1L2), nested Sequential
    blocks with a Bidirectional LSTM (L1), MobileNetV2 with half its layers frozen besides its
    BatchNormalization: all plain Keras, every penalty and freeze restored without us."""
    cases = {
        "nested.keras": (zoo.nested_backbone_with_head(), RegularizationSpec(l1=1e-5, l2=1e-4)),
        "blocks.keras": (zoo.sequential_blocks(), RegularizationSpec(l1=1e-4)),
        "frozen.keras": (zoo.mobilenet_v2(), RegularizationSpec(l2=1e-4, freeze_fraction=0.5)),
    }
    reports = {}
    for name, (model, spec) in cases.items():
        model.save(tmp_path / f"src-{name}")
        reports[name] = regularize_file(tmp_path / f"src-{name}", tmp_path / name, spec)
        assert reports[name].file["format"] == "keras"
        assert (
            "keras.saving.load_model restores them without this package"
            in (reports[name].file["why"][0])
        )
        saved = json.loads(workflow.report_path_for(tmp_path / name).read_text())
        assert saved["file"] == reports[name].file
        assert saved["counts"]["carried_by"] == {"layer config": saved["counts"]["regularized"]}
        assert file_class(tmp_path / name) == "Functional"
    loaded = load_in_fresh_process([tmp_path / name for name in cases])
    for name, report in reports.items():
        assert loaded[name]["class"] == "Functional"
        assert loaded[name]["terms"] == report.counts["regularized_trainable"] > 0
        assert loaded[name]["penalty"] == pytest.approx(report.penalty["total_in_loss"], rel=1e-6)
    # The freeze policy (MobileNetV2's 52 BN layers by default, plus the first half of the
    # layers) is in the layer configs.
    assert loaded["frozen.keras"]["frozen"] > 52
    assert (
        reports["frozen.keras"].validation["reloaded"][0]["frozen_layers"]
        == (loaded["frozen.keras"]["frozen"])
    )


@pytest.mark.parametrize(
    "build, spec, reason",
    [
        (zoo.shared_layer, RegularizationSpec(l2_sp=0.01), "L2-SP penalties"),
        (
            zoo.convnext_tiny,
            RegularizationSpec(l2=1e-4, extra_kinds=("gamma",), layer_types=("LayerScale",)),
            "weights without a regularizer attribute",
        ),
        (zoo.hub_vit, L2, "ViTBackbone 'vit' serializes its constructor arguments"),
        (zoo.subclassed, RegularizationSpec(l2=1e-4, extra_kinds=("scale",)), "serializes its"),
    ],
    ids=["l2sp", "layerscale", "kerashub", "subclassed"],
)
def test_the_envelope_only_where_a_layer_config_cannot_carry_the_penalty(
    build, spec, reason, tmp_path
):
    build().save(tmp_path / "src.keras")
    report = regularize_file(tmp_path / "src.keras", tmp_path / "dst.keras", spec)
    assert report.file["format"] == "regularized-envelope"
    assert any(reason in why for why in report.file["why"]), report.file["why"]
    assert file_class(tmp_path / "dst.keras") == "RegularizedModel"
    reloaded = keras.saving.load_model(tmp_path / "dst.keras")  # this process imported us
    assert len(reloaded.losses) == report.counts["regularized_trainable"]


def test_kerashub_reason_counts_penalties_and_frozen_flags(tmp_path):
    zoo.hub_resnet().save(tmp_path / "src.keras")
    spec = RegularizationSpec(l2=1e-4, include_norm=True)
    report = regularize_file(tmp_path / "src.keras", tmp_path / "dst.keras", spec)
    # 6 kernels + 6 BN gamma + 6 beta; 6 BN layers frozen (counted in test_kerashub.py).
    (why,) = report.file["why"]
    assert "serializes its constructor arguments, not its layers' configs" in why
    assert "without 18 penalties and 6 frozen flags" in why


def test_a_custom_regularizer_needs_its_module_not_this_package(custom_package, tmp_path):
    module, root = custom_package
    zoo.shared_layer().save(tmp_path / "src.keras")
    custom = keras.regularizers.serialize(module.Clipped(0.01))
    report = regularize_file(
        tmp_path / "src.keras", tmp_path / "custom.keras", RegularizationSpec(custom=custom)
    )
    assert report.file["format"] == "keras"
    assert (
        f"custom regularizer Clipped is registered by module {module.__name__!r}"
        in (report.file["why"][1])
    )
    loaded = load_in_fresh_process([tmp_path / "custom.keras"], [module.__name__], root)
    assert loaded["custom.keras"]["terms"] == 2
    assert loaded["custom.keras"]["penalty"] == pytest.approx(report.penalty["total_in_loss"])


def test_a_config_that_does_not_carry_its_penalty_falls_back_to_the_envelope(
    custom_package, tmp_path
):
    module, _ = custom_package
    inputs = keras.Input((4,))
    hidden = module.ForgetfulDense(3, name="forgetful")(inputs)
    keras.Model(inputs, keras.layers.Dense(2, name="out")(hidden)).save(tmp_path / "src.keras")
    report = regularize_file(tmp_path / "src.keras", tmp_path / "dst.keras", L2)
    # Predicted plain (a Functional model, both kernels in slots); the reloaded plain file
    # lost the forgetful layer's penalty, so the plan carries it.
    assert report.file["format"] == "regularized-envelope"
    (why,) = report.file["why"]
    assert why.startswith("the layer configs did not carry what was expected on reload")
    assert "Check `coverage` failed" in why and "forgetful/kernel" in why
    carried = {w["path"].split("/")[-2]: w["carried_by"] for w in report.regularized}
    assert carried == {"forgetful": "plan", "out": "layer config"}
    assert file_class(tmp_path / "dst.keras") == "RegularizedModel"


@pytest.mark.parametrize(
    "spec, expected",
    [
        (L2, ("keras", "Functional")),
        (RegularizationSpec(l2_sp=0.01), ("regularized-envelope", "RegularizedModel")),
    ],
    ids=["l2", "l2sp"],
)
def test_save_regularized_follows_the_same_rule(spec, expected, tmp_path):
    model = zoo.mobilenet_v2()
    report = regularize(model, spec)
    written = save_regularized(model, tmp_path / "m.keras")
    assert (written.name, file_class(tmp_path / "m.keras")) == expected
    reloaded = keras.saving.load_model(tmp_path / "m.keras")
    assert verify(reloaded, report).passed


def test_a_lost_freeze_fails_coverage(tmp_path):
    model = zoo.mobilenet_v2()
    report = regularize(model, L2)
    model.save(tmp_path / "m.keras")
    config = read_config(tmp_path / "m.keras")
    layer = next(x for x in config["config"]["layers"] if x["class_name"] == "BatchNormalization")
    layer["config"]["trainable"] = True
    replace_config(tmp_path / "m.keras", config)
    with pytest.raises(VerificationError, match="trainable=False` was lost") as err:
        verify(keras.saving.load_model(tmp_path / "m.keras"), report)
    assert err.value.check == "coverage"
    assert err.value.weights == [f"mobilenetv2_0.35_32/{layer['config']['name']}"]


@pytest.mark.parametrize("spec", [L2, RegularizationSpec(l2_sp=0.01)], ids=["keras", "envelope"])
def test_the_trainer_loads_both_forms(spec, tmp_path):
    zoo.mobilenet_v2(include_top=False).save(tmp_path / "src.keras")
    report = regularize_file(tmp_path / "src.keras", tmp_path / "dst.keras", spec)
    uri = str(tmp_path / "artifact")
    publish(uri, tmp_path / "dst.keras", workflow.report_path_for(tmp_path / "dst.keras"))
    assert sorted(os.listdir(uri)) == ["Format-Serving", REPORT_FILE]
    model, saved = load_regularized_base(serving_dir(uri))
    assert saved["file"]["format"] == ("keras" if spec is L2 else "regularized-envelope")
    assert len(model.losses) == report.counts["regularized_trainable"] == 52
    with zipfile.ZipFile(tmp_path / "dst.keras") as archive:
        assert ("RegularizedModel" in archive.read("config.json").decode()) == (spec is not L2)
