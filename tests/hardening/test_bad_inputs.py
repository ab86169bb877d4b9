"""Bad inputs: each gives a clear error naming the problem, publishes nothing, leaves no files.

CLI cases check the exit code, the message and an empty output folder; pipeline cases run
LocalDagRunner and check ML Metadata (execution FAILED, no LIVE output artifact) and the
output URI (no files).
"""

import json
from pathlib import Path

import keras
import pytest
from click.testing import CliRunner
from ml_metadata.proto import metadata_store_pb2
from tfx import v1 as tfx

from backbone_regularizer.components.backbone_loader import BackboneLoader
from backbone_regularizer.components.image_ingestion import ImageExampleGen
from backbone_regularizer.components.regularizer import RegularizationSpec
from backbone_regularizer.components.regularizer import component_spec as reg
from backbone_regularizer.pipeline.cli.main import main
from backbone_regularizer.pipeline.lineage.queries import connect
from tests import zoo
from tests.hardening import mini_pipeline


@pytest.fixture(scope="module")
def backbone(tmp_path_factory):
    path = tmp_path_factory.mktemp("src") / "backbone.keras"
    zoo.mobilenet_v2(include_top=False).save(path)
    return path


def lambda_model(path: Path) -> Path:
    inputs = keras.Input((4,))
    x = keras.layers.Lambda(lambda t: t * 2.0)(inputs)
    keras.Model(inputs, keras.layers.Dense(2)(x)).save(path)
    return path


def unregistered_model(path: Path) -> Path:
    class Unregistered(keras.layers.Layer):
        def call(self, x):
            return x

    inputs = keras.Input((4,))
    keras.Model(inputs, keras.layers.Dense(2)(Unregistered()(inputs))).save(path)
    return path


def saved_model_dir(path: Path) -> Path:
    path.mkdir()
    (path / "saved_model.pb").write_bytes(b"\x08\x01")
    (path / "variables").mkdir()
    return path


def corrupt(path: Path) -> Path:
    path.write_bytes(b"PK\x03\x04 this is not a complete zip")
    return path


CLI_CASES = {
    "missing file": (lambda tmp, src: tmp / "absent.keras", [], 1, "(missing)"),
    "corrupt .keras zip": (lambda tmp, src: corrupt(tmp / "c.keras"), [], 1, "corrupt"),
    "SavedModel directory": (lambda tmp, src: saved_model_dir(tmp / "sm"), [], 1, "TF SavedModel"),
    "negative factor": (lambda tmp, src: src, ["--l2", "-0.1"], 1, "Received: l2=-0.1"),
    "NaN factor": (lambda tmp, src: src, ["--l1", "nan"], 1, "Received: l1=nan"),
    "non-numeric factor": (
        lambda tmp, src: src,
        ["--l2", "lots"],
        2,
        "'lots' is not a valid float",
    ),
    "include matching nothing": (
        lambda tmp, src: src,
        ["--include", "^nope$"],
        1,
        "Received: include='^nope$'",
    ),
    "exclude matching nothing": (
        lambda tmp, src: src,
        ["--exclude", "zzz"],
        1,
        "Received: exclude='zzz'",
    ),
    "Lambda layer under safe mode": (
        lambda tmp, src: lambda_model(tmp / "l.keras"),
        [],
        1,
        "contains a Lambda layer",
    ),
    "unregistered custom layer": (
        lambda tmp, src: unregistered_model(tmp / "u.keras"),
        [],
        1,
        "Could not load Keras model",
    ),
    "freeze_until an unknown layer": (
        lambda tmp, src: src,
        ["--freeze-until", "block_99"],
        1,
        "Received: freeze_until='block_99'",
    ),
}


@pytest.mark.parametrize("case", sorted(CLI_CASES))
def test_cli_bad_input(case, tmp_path, backbone):
    make_source, args, code, message = CLI_CASES[case]
    out = tmp_path / "out"
    out.mkdir()
    source = make_source(tmp_path, backbone)
    result = CliRunner().invoke(main, ["regularize", str(source), str(out / "r.keras"), *args])
    assert result.exit_code == code, result.output
    assert message in result.output
    assert list(out.iterdir()) == []  # no model, no report, no staging folder


def test_lambda_opt_out_is_explicit_and_recorded(tmp_path):
    source = lambda_model(tmp_path / "l.keras")
    result = CliRunner().invoke(
        main, ["regularize", str(source), str(tmp_path / "r.keras"), "--unsafe-load", "--json"]
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["validation"]["source_loaded_with_safe_mode"] is False


@pytest.mark.parametrize(
    "config, message",
    [
        ({"pipeline_nam": "x"}, "Unknown keys in config: ['pipeline_nam']"),
        ({"min_accuracy": "0.9"}, "Invalid config `min_accuracy`"),
        ({"trainer": {"num_classes": "five"}}, "Invalid trainer setting `num_classes`"),
        (
            {"regularization": {"custom": {"class_name": "Elastic", "config": {}}}},
            "Unknown regularizer",
        ),
        ({"regularization": {"kind": "l3"}}, "Unknown regularization spec keys: ['kind']"),
    ],
)
def test_config_file_errors(tmp_path, monkeypatch, config, message):
    monkeypatch.chdir(tmp_path)  # the default root, runs/demo, is relative
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    result = CliRunner().invoke(main, ["run", "--config", str(path)])
    assert result.exit_code == 1
    assert message in result.output
    # Nothing ran: the run's folder holds the log of the failure and nothing else.
    [log] = (tmp_path / "runs" / "demo" / "logs").iterdir()
    assert f"log: {log}" in result.output
    assert [p.name for p in (tmp_path / "runs" / "demo").iterdir()] == ["logs"]


def test_unknown_backbone_name_fails_at_build_time():
    with pytest.raises(ValueError, match="MobileNetV2"):
        BackboneLoader(architecture="MobileNetV9", input_shape=[32, 32, 3], weights="none")


def run_failing(pipeline_root: Path, components) -> Exception:
    pipeline = tfx.dsl.Pipeline(
        pipeline_name="bad-input",
        pipeline_root=str(pipeline_root / "pipeline"),
        components=components,
        metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(
            str(pipeline_root / "metadata.sqlite")
        ),
    )
    with pytest.raises(Exception) as err:  # LocalDagRunner re-raises the executor's error
        tfx.orchestration.LocalDagRunner().run(pipeline)
    return err.value


def assert_nothing_published(root: Path, node: str, output_type: str) -> None:
    store = connect(str(root / "metadata.sqlite"))
    types = {t.id: t.name for t in store.get_execution_types()}
    states = [e.last_known_state for e in store.get_executions() if types[e.type_id].endswith(node)]
    assert states == [metadata_store_pb2.Execution.FAILED]
    live = [
        a
        for a in store.get_artifacts_by_type(output_type)
        if a.state == metadata_store_pb2.Artifact.LIVE
    ]
    assert [a for a in live if f"/{node}/" in a.uri] == []
    output = root / "pipeline" / node
    assert [p for p in output.rglob("*") if p.is_file() and ".system" not in p.parts] == []


def importer_folder(tmp_path: Path, write_model) -> str:
    folder = tmp_path / "import" / "Format-Serving"
    folder.mkdir(parents=True)
    write_model(folder / reg.MODEL_FILE)
    return str(folder.parent)


@pytest.mark.e2e
@pytest.mark.parametrize(
    "write_model, spec, message",
    [
        (
            lambda p: zoo.shared_layer().save(p),
            RegularizationSpec(l2=1e-4, include=("^x$",)),
            "matches no layer",
        ),
        (corrupt, RegularizationSpec(l2=1e-4), "corrupt"),
        (lambda_model, RegularizationSpec(l2=1e-4), "Lambda layer"),
    ],
    ids=["include matching nothing", "corrupt model", "Lambda under safe mode"],
)
def test_regularizer_component_publishes_nothing(tmp_path, write_model, spec, message):
    pipeline = mini_pipeline.build(str(tmp_path), importer_folder(tmp_path, write_model), spec)
    error = run_failing(tmp_path, pipeline.components)
    assert message in str(error)
    assert_nothing_published(tmp_path, "BackboneRegularizer", "Model")


@pytest.mark.e2e
def test_backbone_input_too_small_publishes_nothing(tmp_path):
    loader = BackboneLoader(architecture="MobileNetV2", input_shape=[8, 8, 3], weights="none")
    error = run_failing(tmp_path, [loader])
    assert "8" in str(error) and "32" in str(error)  # names the received and the minimum size
    assert_nothing_published(tmp_path, "BackboneLoader", "Model")


@pytest.mark.e2e
def test_image_folder_without_classes_publishes_nothing(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "readme.txt").write_text("no class folders here")
    error = run_failing(tmp_path, [ImageExampleGen(input_base=str(data))])
    assert "Expected class folders" in str(error)
    assert_nothing_published(tmp_path, "ImageExampleGen", "Examples")
