"""Extras keep installs honest: the core install lacks them, and code that needs one names it.

Nothing is uninstalled: a missing package is simulated with ``sys.modules[name] = None``,
which makes ``import name`` fail with ``ModuleNotFoundError`` as if it were not installed.
The template integration test (test_template_project.py) runs a whole pipeline in a venv
holding the core install only.
"""

from __future__ import annotations

import ast
import json
import sys
import zipfile
from pathlib import Path

import pytest
import tomli

from backbone_regularizer.components import BackboneLoader
from backbone_regularizer.components.backbone_loader import presets
from backbone_regularizer.components.extras import EXTRA_OF, MissingExtraError
from backbone_regularizer.components.regularizer.custom_modules import import_for_model
from backbone_regularizer.components.regularizer.keras_file import read_config
from backbone_regularizer.pipeline import object_store
from backbone_regularizer.pipeline.kubeflow.env import prepare_step
from backbone_regularizer.pipeline.lineage.graph import evaluation_metrics

REPO = Path(__file__).resolve().parents[2]
PYPROJECT = tomli.loads((REPO / "pyproject.toml").read_text())


def missing(monkeypatch, *names: str) -> None:
    for name in names:
        monkeypatch.setitem(sys.modules, name, None)


def halted(name: str) -> str:
    return f"Received: ModuleNotFoundError: import of {name} halted; None in sys.modules"


def test_the_extras_and_what_the_core_install_leaves_out():
    extras = PYPROJECT["project"]["optional-dependencies"]
    assert extras == {
        "s3": ["tensorflow-io>=0.37.1,<0.38", "apache-beam[aws]>=2.59,<2.61"],
        "kerashub": ["keras-hub>=0.25.1,<0.26"],
        "gpu": ["tensorflow[and-cuda]>=2.16,<2.17"],
        "openlineage": ["openlineage-python>=1.54,<2"],
    }
    core = " ".join(PYPROJECT["project"]["dependencies"])
    for package in ("tensorflow-io", "keras-hub", "boto3", "aws", "and-cuda", "pip", "openlineage"):
        assert package not in core
    assert "tomli>=2" in PYPROJECT["dependency-groups"]["dev"]
    # The app and CI install the extras they use, from the lock.
    makefile = (REPO / "Makefile").read_text()
    assert "EXTRAS := --extra s3 --extra kerashub" in makefile
    assert "sync --frozen $(EXTRAS)" in makefile


def test_no_module_imports_an_extra_at_import_time():
    """Importing any of our modules works on the core install (extras load on use)."""
    offenders = []
    for path in sorted([*(REPO / "components").rglob("*.py"), *(REPO / "pipeline").rglob("*.py")]):
        for node in ast.parse(path.read_text()).body:  # module level only
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            else:
                continue
            offenders += [
                f"{path.relative_to(REPO)}:{node.lineno}: {name}"
                for name in names
                if name.split(".")[0] in EXTRA_OF
            ]
    assert offenders == []


def test_s3_without_the_s3_extra_names_it(monkeypatch):
    missing(monkeypatch, "tensorflow_io")
    with pytest.raises(MissingExtraError) as raised:
        object_store.configure_process(environ={})
    assert str(raised.value) == (
        "s3:// in TensorFlow (tf.io.gfile) needs the `tensorflow_io` package, which the `s3` "
        "extra installs. Expected it installed: pip install 'backbone-regularizer[s3]'. "
        + halted("tensorflow_io")
    )
    assert isinstance(raised.value, ImportError)


def test_the_bucket_check_without_the_s3_extra_names_it(monkeypatch):
    missing(monkeypatch, "boto3", "botocore")
    object_store.check_uris({"root": "gs://bucket/root", "data": None}, environ={})  # no s3://
    with pytest.raises(MissingExtraError) as raised:
        object_store.check_uris({"root": "s3://bucket/root"}, environ={})
    assert str(raised.value) == (
        "Checking s3:// buckets needs the `boto3` package, which the `s3` extra installs. "
        "Expected it installed: pip install 'backbone-regularizer[s3]'. " + halted("boto3")
    )


def executor_input(output_uri: str, parameters: dict | None = None) -> dict:
    return {
        "inputs": {"parameterValues": parameters or {}},
        "outputs": {
            "artifacts": {"model": {"artifacts": [{"uri": output_uri}]}},
            "outputFile": "/tmp/unused/executor_output.json",
        },
    }


def test_a_kubeflow_step_needs_the_s3_extra_only_when_it_names_s3(monkeypatch):
    missing(monkeypatch, "tensorflow_io", "boto3", "botocore")
    prepare_step(executor_input("gs://bucket/root/model/1"), environ={})
    for step in (
        executor_input("s3://bucket/root/model/1"),
        executor_input("gs://bucket/root/model/1", {"preset": "s3://bucket/presets/resnet"}),
    ):
        with pytest.raises(MissingExtraError, match=r"\[s3\]'\. Received: ModuleNotFound"):
            prepare_step(step, environ={})


def test_lineage_metrics_on_s3_without_the_s3_extra_name_it(monkeypatch):
    missing(monkeypatch, "tensorflow_io")
    with pytest.raises(MissingExtraError, match=r"pip install 'backbone-regularizer\[s3\]'"):
        evaluation_metrics("s3://bucket/root/Evaluator/evaluation/7")


def test_a_kerashub_preset_without_the_kerashub_extra_names_it(monkeypatch):
    missing(monkeypatch, "keras_hub")
    expected = (
        "A KerasHub preset needs the `keras_hub` package, which the `kerashub` extra installs. "
        "Expected it installed: pip install 'backbone-regularizer[kerashub]'. "
        + halted("keras_hub")
    )
    with pytest.raises(MissingExtraError) as raised:
        BackboneLoader(preset="resnet_18_imagenet")  # at pipeline-build time
    assert str(raised.value) == expected
    with pytest.raises(MissingExtraError) as raised:
        presets.load_preset("gs://bucket/presets/resnet")  # in the executor
    assert str(raised.value) == expected
    # keras.applications backbones need nothing of it.
    BackboneLoader(architecture="MobileNetV2", input_shape=[32, 32, 3], weights="none")


def test_a_kerashub_model_file_without_the_kerashub_extra_names_it(monkeypatch, tmp_path):
    # A .keras archive whose config records a KerasHub class (only config.json is read).
    path = tmp_path / "bert.keras"
    config = {"module": "keras_hub.src.models.bert.bert_backbone", "class_name": "BertBackbone"}
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("config.json", json.dumps(config))
    missing(monkeypatch, "keras_hub")
    with pytest.raises(ValueError) as raised:
        import_for_model(read_config(path), source=path.name)
    assert str(raised.value) == (
        "Could not import module 'keras_hub' (recorded in 'bert.keras' as "
        "'keras_hub.src.models.bert.bert_backbone'). Expected an importable module that "
        "registers the model's custom classes, on the Python path of every process that loads "
        "the model (pip install 'backbone-regularizer[kerashub]'). Received: custom_modules=[] "
        "(ModuleNotFoundError: import of keras_hub halted; None in sys.modules)"
    )
