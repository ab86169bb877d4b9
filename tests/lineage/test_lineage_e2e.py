"""Lineage, CLI and run report over two real local runs (span 1, then span 2; marked e2e).

One module-scoped fixture runs the reduced pipeline twice (about 35 s each): the second run
reuses the backbone and regularizer from the cache and retrains on the new span. The same
runs are read back from ML Metadata and from the provenance records in the store alone, and
verified file by file (with two tampered files, put back after each test).
"""

import dataclasses
import json
import re

import pytest
from click.testing import CliRunner

from backbone_regularizer.components.regularizer import component_spec as reg
from backbone_regularizer.pipeline.cli.lineage import lineage_command
from backbone_regularizer.pipeline.demo.data import write_target_span
from backbone_regularizer.pipeline.lineage.facts import pushed_model_lineage
from backbone_regularizer.pipeline.lineage.format import format_lineage
from backbone_regularizer.pipeline.lineage.queries import connect, custom_properties, latest_run
from backbone_regularizer.pipeline.lineage.report import write_run_report
from backbone_regularizer.pipeline.lineage.store import scan, store_lineage, verify_chain
from backbone_regularizer.pipeline.local_runner import run_local
from tests.pipeline.test_pipeline_e2e import reduced_config

pytestmark = pytest.mark.e2e
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _run_facts(config) -> dict:
    store = connect(config.metadata_path)
    nodes = latest_run(store, config.pipeline_name)
    pushed = custom_properties(nodes["Pusher"].outputs["pushed_model"][0])
    assert pushed["pushed"] == 1  # thresholds 0.0 / 1.0: every run is blessed and pushed
    [run] = [
        c.name
        for c in store.get_contexts_by_execution(nodes["Trainer"].execution_id)
        if c.type == "pipeline_run"
    ]
    return {
        "pushed_dir": pushed["pushed_destination"],
        "pushed_uri": nodes["Pusher"].outputs["pushed_model"][0].uri,
        "trainer_execution": nodes["Trainer"].execution_id,
        "run": run,
    }


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("lineage")
    config = dataclasses.replace(reduced_config(tmp), pipeline_name="lineage-test")
    write_target_span(tmp / "images", 1, per_class=12)
    run_local(config)
    first = _run_facts(config)
    write_target_span(tmp / "images", 2, per_class=12)
    run_local(config)
    second = _run_facts(config)
    return config, first, second


def test_latest_pushed_model_links_to_the_second_run(two_runs):
    config, first, second = two_runs
    summary = pushed_model_lineage(connect(config.metadata_path))["summary"]
    assert summary["pushed_model"]["pushed_destination"] == second["pushed_dir"]
    assert summary["blessing"]["blessed"] is True
    accuracy = summary["evaluation"]["metrics"]["metrics"]["candidate"]
    assert 0.0 <= accuracy["sparse_categorical_accuracy"] <= 1.0
    assert summary["trainer"]["execution_id"] == second["trainer_execution"]
    assert summary["trainer"]["run"] == second["run"] != first["run"]
    assert summary["trainer"]["model_run"].endswith(f"/{second['trainer_execution']}")
    examples = summary["examples"]
    assert examples["span"] == 2 and examples["run"] == second["run"]
    assert sum(examples["split_counts"].values()) == 60
    assert examples["label_map"] == {f"digit_{d}": d - 5 for d in range(5, 10)}
    regularizer = summary["regularizer"]
    assert regularizer["node"] == "BackboneRegularizer"
    props = regularizer["properties"]
    assert props[reg.PROP_VALIDATION_PASSED] == 1
    assert props[reg.PROP_REGULARIZER] == "L2(l2=0.0001)"
    assert props[reg.PROP_REGULARIZED] == 52
    backbone = summary["backbone"]
    assert backbone["node"] == "BackboneLoader" and backbone["imported"] is False
    assert backbone["source"] == "keras.applications.MobileNetV2(weights=None)"
    assert backbone["weights_sha256"] == props[reg.PROP_WEIGHTS_SHA256]
    assert backbone["parameter_count"] > 100_000


def test_first_pushed_model_links_to_span_1_and_shares_the_cached_regularizer(two_runs):
    config, first, second = two_runs
    store = connect(config.metadata_path)
    old = pushed_model_lineage(store, first["pushed_dir"], with_metrics=False)["summary"]
    new = pushed_model_lineage(store, second["pushed_dir"], with_metrics=False)["summary"]
    assert old["pushed_model"]["pushed_destination"] == first["pushed_dir"]
    assert old["examples"]["span"] == 1
    assert old["trainer"]["execution_id"] == first["trainer_execution"]
    assert old["trainer"]["run"] == first["run"]
    # Run 2 reused the regularized backbone from the cache: same artifact, made in run 1.
    assert old["regularizer"]["artifact_id"] == new["regularizer"]["artifact_id"]
    assert new["regularizer"]["run"] == first["run"]
    by_uri = pushed_model_lineage(store, first["pushed_uri"] + "/", with_metrics=False)
    assert by_uri["summary"] == old


def test_text_tree_shows_the_path_from_push_to_backbone(two_runs):
    config, first, _ = two_runs
    text = format_lineage(pushed_model_lineage(connect(config.metadata_path), first["pushed_dir"]))
    order = [
        "PushedModel #",
        "produced by Pusher",
        "produced by Trainer",
        "produced by BackboneRegularizer",
        "produced by BackboneLoader",
        "produced by ImageExampleGen",
        "produced by Evaluator",
    ]
    positions = [text.index(marker) for marker in order]
    assert positions == sorted(positions)
    assert "validation_passed=1" in text and "span=1" in text and "span=2" not in text
    assert "sparse_categorical_accuracy=" in text  # evaluation metrics of that run


def test_missing_pushed_model_is_a_clear_error(two_runs):
    config, first, _ = two_runs
    missing = first["pushed_dir"] + "-not-there"
    with pytest.raises(LookupError, match=r"Expected a PushedModel .*Received: no match") as err:
        pushed_model_lineage(connect(config.metadata_path), missing)
    assert first["pushed_dir"] in str(err.value)  # lists what the store does hold


def test_cli_json_latest_and_pushed_model(two_runs):
    config, first, second = two_runs
    runner = CliRunner()
    latest = runner.invoke(lineage_command, ["--metadata", config.metadata_path, "--json"])
    assert latest.exit_code == 0, latest.output
    data = json.loads(latest.stdout)
    assert data["summary"]["examples"]["span"] == 2
    assert data["tree"]["properties"]["pushed_destination"] == second["pushed_dir"]
    old = runner.invoke(
        lineage_command,
        ["--metadata", config.metadata_path, "--pushed-model", first["pushed_dir"], "--json"],
    )
    assert old.exit_code == 0, old.output
    assert json.loads(old.stdout)["summary"]["examples"]["span"] == 1


def test_cli_text_and_errors(two_runs, tmp_path):
    config, first, _ = two_runs
    runner = CliRunner()
    text = runner.invoke(
        lineage_command, ["--metadata", config.metadata_path, "--latest", "--no-metrics"]
    )
    assert text.exit_code == 0, text.output
    assert "produced by BackboneRegularizer" in text.stdout
    assert "examples: spans [2]" in text.stdout
    missing = runner.invoke(
        lineage_command, ["--metadata", config.metadata_path, "--pushed-model", "/nowhere"]
    )
    assert missing.exit_code == 1
    assert "Expected a PushedModel" in missing.output and "'/nowhere'" in missing.output
    both = runner.invoke(
        lineage_command,
        ["--metadata", config.metadata_path, "--latest", "--pushed-model", first["pushed_dir"]],
    )
    assert both.exit_code == 2 and "not both" in both.output
    no_store = runner.invoke(lineage_command, ["--metadata", str(tmp_path / "none.sqlite")])
    assert no_store.exit_code == 1
    assert "Expected an ML Metadata sqlite file" in no_store.output


def test_run_report_sections_and_images(two_runs):
    config, _, second = two_runs
    path = write_run_report(config)
    text = open(path).read()
    assert path.startswith(config.path(config.root) + "/reports/run-") and path.endswith(".md")
    headings = [line for line in text.splitlines() if line.startswith("## ")]
    assert headings == [
        "## Data",
        "## Regularization coverage",
        "## Training",
        "## Evaluation",
        "## Was fine-tuning worth it?",
        "## Blessing and push",
        "## Lineage",
    ]
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert len(images) == 2
    folder = path.rsplit("/", 1)[0]
    for image in images:
        with open(f"{folder}/{image}", "rb") as handle:
            assert handle.read(8) == PNG_MAGIC
    assert "| depthwise | 17 | 0 | 0 |" in text  # the coverage the chart draws
    assert "| accuracy | " in text and ">= 0 (min_accuracy)" in text
    assert "| accuracy change vs baseline | " in text
    # The second run was compared with the first push: the per-class guard's table, per span.
    assert "Comparison: production (same label map, 5 classes)." in text
    assert "| class | label | train images | eval images |" in text
    assert "| digit_5 | 0 | " in text and "| ok |" in text
    assert "| span | examples | baseline | candidate |" in text and "| 2 | " in text
    assert "- spans [2], " in text and "- labels (class folders of the first span, " in text
    # Baselines fitted by the Trainer on this run's own split, beside the fine-tuned model.
    assert "| fine-tuned (Evaluator) | " in text and "| pixel logistic regression | " in text
    assert "| linear probe (frozen backbone) | " in text
    assert f"- pushed to: `{second['pushed_dir']}`" in text
    assert "```text\nPushedModel #" in text and "produced by BackboneRegularizer" in text


# ---------------------------------------------------------------------------------------------
# The same runs read from the store alone (provenance records), and verified file by file.


def comparable(summary: dict) -> dict:
    """What both readers answer: URIs, span, counts, labels, properties, blessing."""
    regularizer, backbone = summary["regularizer"], summary["backbone"]
    examples = summary["examples"]
    return {
        "pushed": (summary["pushed_model"]["uri"], summary["pushed_model"]["pushed_destination"]),
        "blessed": bool(summary["blessing"]["blessed"]),
        "evaluation": summary["evaluation"]["uri"],
        "trainer": (summary["trainer"]["model"], summary["trainer"]["model_run"]),
        "examples": {k: examples[k] for k in ("uri", "node", "run", "span", "split_counts")}
        | {"label_map": examples["label_map"]},
        "regularizer": (regularizer["uri"], regularizer["node"], regularizer["run"]),
        "regularizer_execution": str(regularizer["execution_id"]),
        "backbone": {
            k: backbone[k]
            for k in ("uri", "node", "imported", "source", "weights_sha256", "parameter_count")
        },
    }


def test_the_store_gives_the_same_chain_as_ml_metadata(two_runs):
    config, first, second = two_runs
    store = scan(config.root)
    mlmd = connect(config.metadata_path)
    for pushed_dir in (None, first["pushed_dir"], second["pushed_dir"]):
        from_mlmd = pushed_model_lineage(mlmd, pushed_dir, with_metrics=False)["summary"]
        from_store = store_lineage(store, pushed_dir, with_metrics=False)["summary"]
        assert comparable(from_store) == comparable(from_mlmd)
        # Every property the record holds is the one ML Metadata holds (which keeps fewer
        # digits of a float: penalty_at_init 0.18717 for 0.1871696515881922).
        recorded = from_store["regularizer"]["properties"]
        in_mlmd = from_mlmd["regularizer"]["properties"]
        for key, value in recorded.items():
            expected = (
                pytest.approx(in_mlmd[key], rel=1e-4) if isinstance(value, float) else in_mlmd[key]
            )
            assert value == expected, key
        assert recorded[reg.PROP_VALIDATION_PASSED] == 1
    latest = store_lineage(store, with_metrics=False)["summary"]
    assert latest["pushed_model"]["pushed_destination"] == second["pushed_dir"]
    assert latest["examples"]["span"] == 2
    # The regularizer (cached in run 2) was made in run 1, as ML Metadata says.
    assert latest["regularizer"]["run"] == first["run"]


def test_cli_root_verify_json(two_runs):
    config, _, second = two_runs
    done = CliRunner().invoke(lineage_command, ["--root", config.root, "--verify", "--json"])
    assert done.exit_code == 0, done.output
    data = json.loads(done.stdout)
    assert data["summary"]["pushed_model"]["pushed_destination"] == second["pushed_dir"]
    assert data["summary"]["blessing"]["blessed"] is True
    assert data["summary"]["evaluation"]["metrics"]["validation_ok"] is True
    verification = data["verification"]
    assert verification["problems"] == []
    components = [item["component"] for item in verification["checked"]]
    assert sorted(set(components)) == [
        "BackboneLoader",
        "BackboneRegularizer",
        "ImageExampleGen",
        "Trainer",
    ]
    assert sum(item["files"] for item in verification["checked"]) >= 15
    text = CliRunner().invoke(lineage_command, ["--root", config.root, "--no-metrics"])
    assert text.exit_code == 0, text.output
    assert "produced by BackboneRegularizer (execution" in text.stdout
    assert "examples: spans [2]" in text.stdout


@pytest.fixture
def restored():
    """Put back every file a test tampers with (the module's runs are shared)."""
    saved: dict[str, bytes] = {}

    def keep(path) -> str:
        path = str(path)
        with open(path, "rb") as handle:
            saved[path] = handle.read()
        return path

    yield keep
    for path, data in saved.items():
        with open(path, "wb") as handle:
            handle.write(data)


def test_verify_names_the_pushed_models_swapped_weights(two_runs, restored):
    config, first, second = two_runs
    weights = "variables/variables.data-00000-of-00001"
    target = restored(f"{first['pushed_dir']}/{weights}")
    with open(f"{second['pushed_dir']}/{weights}", "rb") as other:
        swapped = other.read()
    with open(target, "wb") as handle:
        handle.write(swapped)
    done = CliRunner().invoke(
        lineage_command,
        ["--root", config.root, "--pushed-model", first["pushed_dir"], "--verify", "--no-metrics"],
    )
    assert done.exit_code == 1
    assert f"Trainer: changed: {target}" in done.stdout
    assert "Expected every file on the chain" in done.output and target in done.output
    # ML Metadata names the same pushed model; the check reads the records it points to.
    by_mlmd = CliRunner().invoke(
        lineage_command,
        ["--metadata", config.metadata_path, "--pushed-model", first["pushed_dir"], "--verify"],
    )
    assert by_mlmd.exit_code == 1 and target in by_mlmd.output


def test_verify_names_a_regularized_models_edited_config(two_runs, restored, tmp_path):
    import zipfile

    config, _, _ = two_runs
    store = scan(config.root)
    regularized = store_lineage(store, with_metrics=False)["summary"]["regularizer"]["uri"]
    model = restored(f"{regularized}/Format-Serving/{reg.MODEL_FILE}")
    edited = tmp_path / "edited.keras"
    with zipfile.ZipFile(model) as source, zipfile.ZipFile(edited, "w") as target:
        for item in source.infolist():
            data = source.read(item)
            if item.filename == "config.json":
                assert b'"l2": 0.0001' in data
                data = data.replace(b'"l2": 0.0001', b'"l2": 0.1')
            target.writestr(item, data)
    with open(model, "wb") as handle:
        handle.write(edited.read_bytes())
    result = verify_chain(scan(config.root))
    assert [(p["component"], p["problem"], p["file"]) for p in result["problems"]] == [
        ("BackboneRegularizer", "changed", model)
    ]
