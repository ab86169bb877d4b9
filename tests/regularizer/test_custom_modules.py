"""custom_modules: `--import` on the CLI, `custom_modules` on BackboneRegularizer, and the
automatic import of keras_hub, on real registered classes and real KerasHub backbones."""

import json
import os
import shutil
import sys

import keras
import pytest
from click.testing import CliRunner
from tfx.types import channel_utils, standard_artifacts

from backbone_regularizer.components.regularizer import BackboneRegularizer, RegularizationSpec
from backbone_regularizer.components.regularizer import component_spec as cs
from backbone_regularizer.components.regularizer.custom_modules import (
    check_module_names,
    import_for_model,
    import_modules,
    modules_json,
    recorded_modules,
)
from backbone_regularizer.components.regularizer.executor import Executor
from backbone_regularizer.components.regularizer.keras_file import load_keras_model, read_config
from backbone_regularizer.pipeline.cli.main import main
from backbone_regularizer.pipeline.trainer.base_model import load_regularized_base
from backbone_regularizer.pipeline.trainer.config import TrainerConfig
from tests import zoo

# Kernels of zoo.hub_resnet(), counted in tests/regularizer/test_kerashub.py.
RESNET_KERNELS = 6

LAYERS = """
import keras


@keras.saving.register_keras_serializable(package="{package}")
class ScaledDense(keras.layers.Dense):
    def __init__(self, units, factor=2.0, **kwargs):
        super().__init__(units, **kwargs)
        self.factor = factor

    def call(self, inputs):
        return super().call(inputs) * self.factor

    def get_config(self):
        return {{**super().get_config(), "factor": self.factor}}
"""


@pytest.fixture
def custom_model(tmp_path, monkeypatch, request):
    """A model with a registered class from package ``<package>.layers`` (the package's
    ``__init__`` imports nothing), saved, then unregistered and unimported: what a fresh
    process sees."""
    package = f"hp_custom_{request.node.name.split('[')[0][-20:]}"
    root = tmp_path / "modules"
    (root / package).mkdir(parents=True)
    (root / package / "__init__.py").write_text("")
    (root / package / "layers.py").write_text(LAYERS.format(package=package))
    monkeypatch.syspath_prepend(str(root))
    layers = import_modules([f"{package}.layers"])
    assert layers == (f"{package}.layers",)
    inputs = keras.Input((6,))
    hidden = sys.modules[f"{package}.layers"].ScaledDense(4, name="scaled")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(2, name="out")(hidden), name="custom")
    path = tmp_path / "custom.keras"
    model.save(path)
    forget(package, monkeypatch)
    return path, package


def forget(package, monkeypatch):
    """Unimport ``package`` and unregister its class (restored after the test)."""
    for name in (f"{package}.layers", package):
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.delitem(keras.saving.get_custom_objects(), f"{package}>ScaledDense")


def test_check_module_names_normalizes_and_refuses_non_names():
    assert check_module_names(None) == ()
    assert check_module_names("a.b") == ("a.b",)
    assert check_module_names(["a", "b.c", "a"]) == ("a", "b.c")
    assert check_module_names('["x", "y"]') == ("x", "y")
    assert modules_json(("x", "y")) == '["x", "y"]'
    for bad in (["a-b"], [3], "import os; x", ["a..b"], {"a": 1}):
        with pytest.raises(ValueError, match=r"Expected a list of dotted Python module names"):
            check_module_names(bad)


def test_failed_import_is_a_clear_error(tmp_path, monkeypatch):
    with pytest.raises(ValueError) as err:
        import_modules(["hp_no_such_module_x"])
    assert str(err.value).startswith("Could not import module 'hp_no_such_module_x'")
    assert "Expected an importable module" in str(err.value)
    assert "Received: custom_modules=['hp_no_such_module_x'] (ModuleNotFoundError: No module" in (
        str(err.value)
    )
    (tmp_path / "hp_raises_on_import.py").write_text("raise RuntimeError('boom')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ValueError, match=r"\(RuntimeError: boom\)"):
        import_modules(["hp_raises_on_import"])


def test_recorded_modules_and_trust(custom_model):
    path, package = custom_model
    config = read_config(path)
    recorded = recorded_modules(config)
    assert f"{package}.layers" in recorded and "keras.layers" in recorded
    # Not named by the user: left to Keras, which cannot find the class.
    assert import_for_model(config) == ()
    with pytest.raises(ValueError, match=r"Could not locate class 'ScaledDense'"):
        load_keras_model(path)
    # Naming the package trusts its recorded submodule, which registers the class.
    assert import_for_model(config, [package]) == (package, f"{package}.layers")
    assert load_keras_model(path).get_layer("scaled").factor == 2.0


def test_kerashub_file_imports_keras_hub_and_fails_clearly_without_it(tmp_path, monkeypatch):
    path = tmp_path / "bert.keras"
    zoo.hub_bert().save(path)
    assert any(m.startswith("keras_hub.") for m in recorded_modules(read_config(path)))
    assert import_for_model(read_config(path)) == ("keras_hub",)
    monkeypatch.setitem(sys.modules, "keras_hub", None)  # as if keras-hub were not installed
    with pytest.raises(ValueError) as err:
        load_keras_model(path)
    message = str(err.value)
    assert "Could not import module 'keras_hub' (recorded in 'bert.keras' as 'keras_hub.src." in (
        message
    )
    assert "Received: custom_modules=[] (ModuleNotFoundError:" in message


def test_cli_regularize_needs_import_for_custom_classes(custom_model, tmp_path):
    path, package = custom_model
    dst = tmp_path / "out.keras"
    result = CliRunner().invoke(main, ["regularize", str(path), str(dst)])
    assert result.exit_code == 1
    assert "Could not locate class 'ScaledDense'" in result.output
    result = CliRunner().invoke(main, ["regularize", str(path), str(dst), "--import", package])
    assert result.exit_code == 0, result.output
    assert "L2(l2=0.0001) on 2 weights (0 frozen)" in result.output
    report = json.loads((tmp_path / "out.report.json").read_text())
    assert report["validation"]["passed"] is True
    assert sorted(w["path"] for w in report["regularized"]) == [
        "custom/out/kernel",
        "custom/scaled/kernel",
    ]


def test_cli_import_from_working_directory(custom_model, tmp_path, monkeypatch):
    path, package = custom_model
    monkeypatch.setattr(sys, "path", [p for p in sys.path if not p.endswith("modules")])
    monkeypatch.chdir(tmp_path / "modules")
    result = CliRunner().invoke(main, ["audit", str(path), "--import", package, "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)["summary"]
    assert summary["regularized"] == 0 and len(summary["missed"]) == 2


def test_cli_failed_import_exits_one(tmp_path):
    source = tmp_path / "resnet.keras"
    zoo.hub_resnet().save(source)
    for command in (["regularize", str(source), str(tmp_path / "o.keras")], ["audit", str(source)]):
        result = CliRunner().invoke(main, [*command, "--import", "hp_missing_module"])
        assert result.exit_code == 1
        assert "error: Could not import module 'hp_missing_module'." in result.output
        assert "Received: custom_modules=['hp_missing_module']" in result.output
    assert not (tmp_path / "o.keras").exists()


def test_cli_regularize_and_audit_kerashub_resnet(tmp_path):
    source = tmp_path / "resnet.keras"
    zoo.hub_resnet().save(source)
    dst = tmp_path / "reg.keras"
    result = CliRunner().invoke(main, ["regularize", str(source), str(dst), "--l2", "1e-3"])
    assert result.exit_code == 0, result.output
    assert f"L2(l2=0.001) on {RESNET_KERNELS} weights (0 frozen)" in result.output
    assert "predictions_unchanged" in result.output
    result = CliRunner().invoke(main, ["audit", str(dst), "--import", "keras_hub", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)["summary"]
    assert summary["regularized"] == RESNET_KERNELS and summary["missed"] == []


def test_component_custom_modules_exec_property():
    backbone = channel_utils.as_channel([standard_artifacts.Model()])
    plain = BackboneRegularizer(backbone=backbone, spec=RegularizationSpec(l2=1e-4))
    assert cs.CUSTOM_MODULES_KEY not in plain.exec_properties  # cache keys unchanged
    with_modules = BackboneRegularizer(
        backbone=backbone,
        spec=RegularizationSpec(l2=1e-4),
        custom_modules=["my_project.layers", "keras_hub"],
    )
    value = with_modules.exec_properties[cs.CUSTOM_MODULES_KEY]
    assert isinstance(value, str)  # KFP reads strings; lists of protos and bools crash it
    assert json.loads(value) == ["my_project.layers", "keras_hub"]
    with pytest.raises(ValueError, match=r"Received: custom_modules=\['not a module'\]"):
        BackboneRegularizer(
            backbone=backbone, spec=RegularizationSpec(l2=1e-4), custom_modules=["not a module"]
        )


def _run_executor(tmp_path, source, custom_modules=None):
    backbone = standard_artifacts.Model()
    backbone.uri = str(tmp_path / "backbone")
    os.makedirs(os.path.join(backbone.uri, "Format-Serving"))
    shutil.copy(source, os.path.join(backbone.uri, "Format-Serving", cs.MODEL_FILE))
    output = standard_artifacts.Model()
    output.uri = str(tmp_path / "output")
    properties = {cs.SPEC_KEY: RegularizationSpec(l2=1e-4).to_json(), cs.SAFE_MODE_KEY: 1}
    if custom_modules is not None:
        properties[cs.CUSTOM_MODULES_KEY] = modules_json(custom_modules)
    Executor().Do({cs.BACKBONE_KEY: [backbone]}, {cs.MODEL_KEY: [output]}, properties)
    return output


def test_executor_imports_custom_modules(custom_model, tmp_path):
    path, package = custom_model
    with pytest.raises(ValueError, match=r"Could not import module 'hp_missing_module'"):
        _run_executor(tmp_path / "bad", path, ["hp_missing_module"])
    assert not (tmp_path / "bad" / "output").exists()
    output = _run_executor(tmp_path / "good", path, [package])
    assert output.get_int_custom_property(cs.PROP_REGULARIZED) == 2
    assert output.get_int_custom_property(cs.PROP_VALIDATION_PASSED) == 1
    assert json.loads(output.get_string_custom_property(cs.PROP_CUSTOM_MODULES)) == [package]


def test_executor_kerashub_backbone_without_custom_modules(tmp_path):
    source = tmp_path / "resnet.keras"
    zoo.hub_resnet().save(source)
    output = _run_executor(tmp_path, source)
    assert output.get_int_custom_property(cs.PROP_REGULARIZED) == RESNET_KERNELS
    assert output.get_int_custom_property(cs.PROP_VALIDATION_PASSED) == 1
    assert output.get_string_custom_property(cs.PROP_CUSTOM_MODULES) == "[]"


def test_trainer_loads_the_base_model_with_custom_modules(custom_model, tmp_path, monkeypatch):
    path, package = custom_model
    output = _run_executor(tmp_path, path, [package])
    forget(package, monkeypatch)  # the Trainer runs in another process
    serving = os.path.join(output.uri, "Format-Serving")
    with pytest.raises(ValueError, match=r"Could not locate class 'ScaledDense'"):
        load_regularized_base(serving)
    config = TrainerConfig.from_dict({"num_classes": 2, "custom_modules": [package]})
    model, report = load_regularized_base(serving, config.custom_modules)
    assert len(model.losses) == report["counts"]["regularized"] == 2
