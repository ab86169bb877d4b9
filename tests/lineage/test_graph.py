"""Lineage over a small ML Metadata graph written by the test (no pipeline run).

Two runs of a pipeline whose backbone comes from an Importer: run 1 pushes, run 2 reuses the
backbone and regularizer from the cache, trains on span 2 and is not blessed.
"""

import json
import subprocess
import sys

import pytest
from click.testing import CliRunner
from ml_metadata.proto import metadata_store_pb2 as mlmd

from backbone_regularizer.components.regularizer import component_spec
from backbone_regularizer.pipeline.cli.lineage import lineage_command
from backbone_regularizer.pipeline.lineage.facts import REGULARIZER_INPUT_KEY, pushed_model_lineage
from backbone_regularizer.pipeline.lineage.format import format_lineage
from backbone_regularizer.pipeline.lineage.graph import find_pushed_model, iter_artifacts, lineage
from backbone_regularizer.pipeline.lineage.queries import connect

PIPELINE = "graph-test"
COMPLETE, CACHED = mlmd.Execution.COMPLETE, mlmd.Execution.CACHED
INPUT, OUTPUT = mlmd.Event.INPUT, mlmd.Event.OUTPUT


class GraphWriter:
    def __init__(self, store):
        self.store = store
        self.types: dict[str, int] = {}

    def _type(self, kind, name):
        key = f"{kind}:{name}"
        if key not in self.types:
            put = {
                "artifact": (self.store.put_artifact_type, mlmd.ArtifactType),
                "execution": (self.store.put_execution_type, mlmd.ExecutionType),
                "context": (self.store.put_context_type, mlmd.ContextType),
            }[kind]
            self.types[key] = put[0](put[1](name=name))
        return self.types[key]

    def artifact(self, type_name, uri, **props):
        artifact = mlmd.Artifact(type_id=self._type("artifact", type_name), uri=uri)
        artifact.state = mlmd.Artifact.LIVE
        for key, value in props.items():
            field = "int_value" if isinstance(value, int) else "string_value"
            setattr(artifact.custom_properties[key], field, value)
        return artifact

    def context(self, type_name, name):
        found = self.store.get_context_by_type_and_name(type_name, name)
        if found is not None:
            return found
        context = mlmd.Context(type_id=self._type("context", type_name), name=name)
        [context.id] = self.store.put_contexts([context])
        return context

    def execution(self, node, run, type_name, state, inputs=None, outputs=None):
        """Record one execution; returns its output artifacts (with ids) by key."""
        execution = mlmd.Execution(
            type_id=self._type("execution", type_name), last_known_state=state
        )
        pairs = []
        for kind, channel in ((INPUT, inputs or {}), (OUTPUT, outputs or {})):
            for key, artifact in channel.items():
                event = mlmd.Event(type=kind)
                event.path.steps.add().key = key
                event.path.steps.add().index = 0
                pairs.append((artifact, event))
        contexts = [
            self.context("pipeline", PIPELINE),
            self.context("pipeline_run", run),
            self.context("node", f"{PIPELINE}.{node}"),
        ]
        _, artifact_ids, _ = self.store.put_execution(execution, pairs, contexts)
        for (artifact, _), artifact_id in zip(pairs, artifact_ids, strict=True):
            artifact.id = artifact_id
        return outputs


def run(writer, name, span, backbone=None, regularized=None, blessed=1):
    importer = "tfx.dsl.components.common.importer.Importer"
    cached = backbone is not None
    backbone = backbone or writer.artifact("Model", "/models/source_backbone")
    writer.execution(
        "backbone_importer",
        name,
        importer,
        CACHED if cached else COMPLETE,
        {},
        {"result": backbone},
    )
    regularized = regularized or writer.artifact(
        "Model", "/p/BackboneRegularizer/model/2", validation_passed=1, regularizer="L2(l2=0.001)"
    )
    writer.execution(
        "BackboneRegularizer",
        name,
        "backbone_regularizer.components.regularizer.component.BackboneRegularizer",
        CACHED if cached else COMPLETE,
        {"backbone": backbone},
        {"model": regularized},
    )
    examples = writer.artifact(
        "Examples",
        f"/p/examples/{span}",
        span=span,
        count_train=8,
        count_eval=4,
        label_map='{"a":0,"b":1}',
    )
    writer.execution(
        "ImageExampleGen", name, "ImageExampleGen", COMPLETE, {}, {"examples": examples}
    )
    model = writer.artifact("Model", f"/p/Trainer/model/{span}")
    model_run = writer.artifact("ModelRun", f"/p/Trainer/model_run/{span}")
    writer.execution(
        "Trainer",
        name,
        "tfx.components.trainer.component.Trainer",
        COMPLETE,
        {"examples": examples, "base_model": regularized},
        {"model": model, "model_run": model_run},
    )
    evaluation = writer.artifact("ModelEvaluation", f"/p/Evaluator/evaluation/{span}")
    blessing = writer.artifact("ModelBlessing", f"/p/Evaluator/blessing/{span}", blessed=blessed)
    writer.execution(
        "Evaluator",
        name,
        "tfx.components.evaluator.component.Evaluator",
        COMPLETE,
        {"model": model, "examples": examples},
        {"evaluation": evaluation, "blessing": blessing},
    )
    props = {"pushed": blessed}
    if blessed:
        props["pushed_destination"] = f"/serving/{span}"
    pushed = writer.artifact("PushedModel", f"/p/Pusher/pushed_model/{span}", **props)
    writer.execution(
        "Pusher",
        name,
        "tfx.components.pusher.component.Pusher",
        COMPLETE,
        {"model": model, "model_blessing": blessing},
        {"pushed_model": pushed},
    )
    return {"backbone": backbone, "regularized": regularized, "pushed": pushed, "model": model}


@pytest.fixture()
def graph(tmp_path):
    store = connect(str(tmp_path / "metadata.sqlite"), read_only=False)
    writer = GraphWriter(store)
    first = run(writer, "run-1", span=1)
    second = run(
        writer,
        "run-2",
        span=2,
        backbone=first["backbone"],
        regularized=first["regularized"],
        blessed=0,
    )
    return store, first, second


def test_latest_is_the_newest_model_actually_pushed(graph):
    store, first, _ = graph
    assert find_pushed_model(store).id == first["pushed"].id
    summary = pushed_model_lineage(store, with_metrics=False)["summary"]
    assert summary["pushed_model"]["pushed_destination"] == "/serving/1"
    assert summary["examples"]["span"] == 1
    assert summary["blessing"]["blessed"] is True


def test_by_artifact_uri_follows_a_run_that_reused_cached_steps(graph):
    store, first, second = graph
    result = pushed_model_lineage(store, "/p/Pusher/pushed_model/2/", with_metrics=False)
    summary = result["summary"]
    assert summary["pushed_model"]["pushed"] is False
    assert summary["blessing"]["blessed"] is False
    assert summary["examples"]["span"] == 2
    assert summary["examples"]["split_counts"] == {"train": 8, "eval": 4}
    assert summary["examples"]["label_map"] == {"a": 0, "b": 1}
    assert summary["trainer"]["run"] == "run-2"
    assert summary["trainer"]["model_run"] == "/p/Trainer/model_run/2"
    # The regularized model was made in run 1; run 2's cached execution only reused it.
    assert summary["regularizer"]["artifact_id"] == first["regularized"].id
    assert summary["regularizer"]["run"] == "run-1"
    assert summary["regularizer"]["properties"]["validation_passed"] == 1
    assert summary["backbone"]["imported"] is True
    assert summary["backbone"]["uri"] == "/models/source_backbone"
    assert summary["backbone"]["node"] == "backbone_importer"
    json.dumps(result)  # JSON-able as it is


def test_every_artifact_is_expanded_once(graph):
    store, _, second = graph
    tree = lineage(store, second["pushed"], with_metrics=False)
    nodes = list(iter_artifacts(tree))
    assert len({n["artifact_id"] for n in nodes}) == len(nodes)
    assert sorted(n["type"] for n in nodes) == [
        "Examples",
        "Model",  # backbone
        "Model",  # regularized
        "Model",  # trained
        "ModelBlessing",
        "ModelEvaluation",
        "ModelRun",
        "PushedModel",
    ]
    text = format_lineage(tree)
    assert f"Model #{second['model'].id} (see above)" in text
    assert "produced by backbone_importer" in text
    assert "produced by BackboneRegularizer" in text
    assert "span=2" in text and "span=1" not in text


def test_unreadable_evaluation_is_reported_not_fatal(graph):
    store, first, _ = graph
    summary = pushed_model_lineage(store, "/serving/1")["summary"]
    assert "metrics" not in summary["evaluation"]
    assert summary["evaluation"]["metrics_error"]


def test_unknown_pushed_model_names_what_the_store_has(graph):
    store, _, _ = graph
    with pytest.raises(LookupError, match=r"Expected a PushedModel .*'/serving/9'.*Received: no "):
        find_pushed_model(store, "/serving/9")
    with pytest.raises(LookupError, match=r"pushed destinations known: \['/serving/1'\]"):
        find_pushed_model(store, "/serving/9")


def test_unknown_pipeline_is_a_clear_error(graph):
    store, _, _ = graph
    with pytest.raises(LookupError, match=r"Expected pipeline 'other'.*\['graph-test'\]"):
        find_pushed_model(store, pipeline_name="other")
    assert find_pushed_model(store, pipeline_name=PIPELINE).uri == "/p/Pusher/pushed_model/1"


def test_store_without_pushed_models(tmp_path):
    store = connect(str(tmp_path / "empty.sqlite"), read_only=False)
    with pytest.raises(
        LookupError, match=r"Expected a PushedModel artifact with pushed=1.*Received: 0 Pushed"
    ):
        find_pushed_model(store)


def test_cli_on_a_written_store(graph, tmp_path):
    runner = CliRunner()
    store_path = str(tmp_path / "metadata.sqlite")
    result = runner.invoke(
        lineage_command,
        ["--metadata", store_path, "--pipeline", PIPELINE, "--no-metrics", "--json"],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)["summary"]
    assert summary["backbone"] == {
        "artifact_id": summary["backbone"]["artifact_id"],
        "uri": "/models/source_backbone",
        "node": "backbone_importer",
        "imported": True,
    }
    text = runner.invoke(lineage_command, ["--metadata", store_path, "--no-metrics"])
    assert text.exit_code == 0, text.output
    assert "backbone: imported from /models/source_backbone" in text.stdout


def test_cli_store_options_are_exclusive_and_unreachable_grpc_is_clear(tmp_path):
    runner = CliRunner()
    both = runner.invoke(
        lineage_command, ["--metadata", str(tmp_path / "m.sqlite"), "--grpc-host", "localhost"]
    )
    assert both.exit_code == 2 and "Give one of --config, --metadata or --grpc-host" in both.output
    # Port 1 refuses connections at once: the error names the service and the KFP hint.
    refused = runner.invoke(
        lineage_command, ["--grpc-host", "127.0.0.1", "--grpc-port", "1", "--no-metrics"]
    )
    assert refused.exit_code == 1
    assert "Expected a reachable ML Metadata store at 127.0.0.1:1" in refused.output
    assert "port-forward svc/metadata-grpc-service" in refused.output


def test_cli_no_metrics_imports_no_tensorflow(graph, tmp_path):
    """Reading a store needs ml_metadata only: a fresh process must not load TensorFlow."""
    child = (
        "import json, sys\n"
        "from backbone_regularizer.pipeline.cli.main import main\n"
        "try:\n"
        "    main.main(sys.argv[1:], prog_name='backbone-reg')\n"
        "except SystemExit as exit:\n"
        "    code = exit.code\n"
        "heavy = [m for m in ('tensorflow', 'tfx', 'keras') if m in sys.modules]\n"
        "print(json.dumps({'code': code, 'heavy': heavy}))\n"
    )
    store_path = str(tmp_path / "metadata.sqlite")
    args = ["lineage", "--metadata", store_path, "--pipeline", PIPELINE, "--no-metrics"]
    done = subprocess.run(
        [sys.executable, "-c", child, *args], capture_output=True, text=True, timeout=120
    )
    *lines, report = done.stdout.splitlines()
    assert json.loads(report) == {"code": 0, "heavy": []}, done.stderr
    assert "  backbone: imported from /models/source_backbone" in lines
    [log] = (tmp_path / "logs").iterdir()
    assert log.name.startswith("lineage-")
    assert done.stderr.splitlines() == [f"log: {log}"]


def test_the_regularizer_input_key_is_the_components():
    assert REGULARIZER_INPUT_KEY == component_spec.BACKBONE_KEY
