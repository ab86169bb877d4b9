"""The whole local pipeline with root, images, backbone weights and push destination on s3://.

Against a real S3 server (moto_server, credentials checked), through the real command line in
subprocesses, as a MinIO user runs it: ``backbone-reg run`` then ``backbone-reg lineage``, and
the bad-store cases. One pipeline run per module (about 2 minutes on 2 cores). Every exit code
is asserted: tensorflow-io aborts a process that used s3:// with 134 at interpreter exit unless
it leaves through ``backbone_regularizer.pipeline.process_exit`` (tensorflow/io#2039).
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from backbone_regularizer.pipeline.config import BackboneConfig, PipelineConfig
from backbone_regularizer.pipeline.demo.data import write_target_span
from backbone_regularizer.pipeline.lineage.queries import connect, custom_properties, latest_run
from tests.pipeline.test_pipeline_e2e import NODES
from tests.s3_server import free_port

pytestmark = pytest.mark.e2e
SERVING_BUCKET = "backbone-reg-serving"
CLI = str(Path(sys.executable).with_name("backbone-reg"))


def s3_config(server, folder: Path, prefix: str) -> PipelineConfig:
    return PipelineConfig(
        pipeline_name="s3-e2e",
        root=server.uri(f"{prefix}/run"),
        data_root=server.uri(f"{prefix}/images"),
        metadata=str(folder / "metadata.sqlite"),
        push_destination=server.uri(f"{prefix}/serving", bucket=SERVING_BUCKET),
        train_eval_ratio=(1, 1),
        backbone=BackboneConfig(weights=server.uri(f"{prefix}/source.weights.h5")),
        regularization={"l2": 1e-4},
        trainer={"num_classes": 5, "epochs": 2, "batch_size": 16, "augment": False},
        min_accuracy=0.0,
        max_accuracy_drop=1.0,
        max_class_accuracy_drop=1.0,
    )


def cli(args: list[str], env: dict[str, str], timeout: int = 900):
    started = time.perf_counter()
    done = subprocess.run(
        [CLI, *args], env={**os.environ, **env}, capture_output=True, text=True, timeout=timeout
    )
    done.seconds = time.perf_counter() - started
    return done


def write_config(config: PipelineConfig, folder: Path) -> Path:
    path = folder / "config.json"
    path.write_text(json.dumps(config.to_dict()))
    return path


@dataclasses.dataclass
class S3Run:
    config: PipelineConfig
    config_path: Path
    run: subprocess.CompletedProcess
    lineage: subprocess.CompletedProcess
    store_lineage: subprocess.CompletedProcess


@pytest.fixture(scope="module")
def s3_run(s3_server, tmp_path_factory) -> S3Run:
    from backbone_regularizer.components.backbone_loader.applications import build_backbone

    folder = tmp_path_factory.mktemp("s3-e2e")
    s3_server.create_bucket(SERVING_BUCKET)
    write_target_span(folder / "images", 1, per_class=12)
    s3_server.upload_tree(folder / "images", "e2e/images")
    backbone = build_backbone("MobileNetV2", "none", [32, 32, 3], kwargs={"alpha": 0.35})
    backbone.save_weights(folder / "source.weights.h5")
    s3_server.client().upload_file(
        str(folder / "source.weights.h5"), s3_server.bucket, "e2e/source.weights.h5"
    )
    config = s3_config(s3_server, folder, "e2e")
    path = write_config(config, folder)
    run = cli(["run", "--config", str(path)], s3_server.env)
    lineage = cli(["lineage", "--config", str(path)], s3_server.env)
    # The same from the provenance records on s3:// alone, every file re-hashed.
    from_store = cli(["lineage", "--root", config.root, "--verify", "--json"], s3_server.env)
    runs = (("run", run), ("lineage", lineage), ("store-lineage", from_store))
    for name, done in runs:  # kept for a failure's reader
        (folder / f"{name}.stdout").write_text(done.stdout)
        (folder / f"{name}.stderr").write_text(done.stderr)
    return S3Run(config, path, run, lineage, from_store)


def test_the_run_exits_0_and_every_node_completes(s3_run, s3_server):
    assert s3_run.run.returncode == 0, s3_run.run.stderr[-3000:]
    nodes = latest_run(connect(s3_run.config.metadata_path), s3_run.config.pipeline_name)
    assert {n: r.state for n, r in nodes.items()} == dict.fromkeys(NODES, "COMPLETE")
    for node in ("ImageExampleGen", "BackboneRegularizer", "Trainer", "Evaluator"):
        for artifacts in nodes[node].outputs.values():
            assert all(a.uri.startswith(s3_server.uri("e2e/run/pipeline/")) for a in artifacts)
    examples = custom_properties(nodes["ImageExampleGen"].outputs["examples"][0])
    assert examples["count_train"] + examples["count_eval"] == 60
    loader = custom_properties(nodes["BackboneLoader"].outputs["backbone"][0])
    assert loader["source"] == s3_server.uri("e2e/source.weights.h5")
    pushed = custom_properties(nodes["Pusher"].outputs["pushed_model"][0])
    assert pushed["pushed"] == 1
    prefix = pushed["pushed_destination"].removeprefix(f"s3://{SERVING_BUCKET}/") + "/"
    assert prefix.startswith("e2e/serving/")
    keys = s3_server.keys(SERVING_BUCKET, prefix)
    assert {prefix + "saved_model.pb", prefix + "model.keras"} <= set(keys)
    report = [line for line in s3_run.run.stdout.splitlines() if "run report:" in line]
    assert report[0].split("run report: ")[1].startswith(s3_server.uri("e2e/run/reports/run-"))


def test_the_console_shows_steps_training_and_summary_and_the_log_has_the_rest(s3_run):
    """What a user sees from `backbone-reg run` without a terminal (CI): no library output."""
    out = s3_run.run.stdout.splitlines()
    assert s3_run.run.stderr == ""
    assert out[0] == f"running pipeline s3-e2e (root {s3_run.config.root})"
    log = Path(out[1].removeprefix("log: "))
    assert log.parent == Path(s3_run.config.metadata_path).parent / "logs"  # root is s3://
    steps = [line for line in out if line.startswith("[")]
    assert [line[8:].split()[:2] for line in steps] == [
        [node, status] for node in _in_order(steps) for status in ("started", "completed")
    ]
    assert sorted(_in_order(steps)) == sorted(NODES)
    training = [line.strip() for line in out if line.strip().startswith("training [")]
    assert training and all("val_accuracy" in line for line in training)
    summary = out[out.index(steps[-1]) + 1 :]
    assert summary[0].startswith("pipeline s3-e2e finished in ")
    assert len(out) == 2 + len(steps) + len(training) + len(summary) < 60
    text = log.read_text()
    for line in out[:2] + steps + summary:  # the console's lines are in the log, once
        assert text.count(line + "\n") == 1, line
    assert "Epoch 1/" in text and "INFO" in text  # Keras and TFX output: the log only
    lineage_log = s3_run.lineage.stderr.splitlines()[-1].removeprefix("log: ")
    assert Path(lineage_log).parent == log.parent


def _in_order(steps: list[str]) -> list[str]:
    return [line[8:].split()[0] for line in steps[::2]]


def test_lineage_reads_the_run_back_from_s3(s3_run):
    assert s3_run.lineage.returncode == 0, s3_run.lineage.stderr[-3000:]
    lines = s3_run.lineage.stdout.splitlines()
    assert f"pushed model: s3://{SERVING_BUCKET}/e2e/serving/" in "\n".join(lines)
    assert "  blessed: True" in lines
    assert any(line.startswith("  examples: spans [1], splits {'eval': ") for line in lines)
    assert any(line.startswith("  regularized backbone: L2(l2=0.0001) on 52") for line in lines)


def test_lineage_and_verify_from_the_records_on_s3_alone(s3_run):
    done = s3_run.store_lineage
    assert done.returncode == 0, done.stderr[-3000:]
    data = json.loads(done.stdout)
    summary = data["summary"]
    assert summary["pushed_model"]["pushed_destination"].startswith(
        f"s3://{SERVING_BUCKET}/e2e/serving/"
    )
    assert summary["blessing"]["blessed"] is True
    assert summary["evaluation"]["metrics"]["validation_ok"] is True
    assert summary["examples"]["span"] == 1
    assert summary["regularizer"]["uri"].startswith(s3_run.config.root)
    assert summary["backbone"]["source"] == s3_run.config.backbone.weights
    assert data["verification"]["problems"] == []
    checked = data["verification"]["checked"]
    assert {item["component"] for item in checked} == {
        "BackboneLoader",
        "BackboneRegularizer",
        "ImageExampleGen",
        "Trainer",
    }
    assert all(item["uri"].startswith("s3://") for item in checked)
    # ML Metadata, read by the other command, names the same chain.
    nodes = latest_run(connect(s3_run.config.metadata_path), s3_run.config.pipeline_name)
    assert summary["regularizer"]["uri"] == nodes["BackboneRegularizer"].outputs["model"][0].uri
    assert summary["trainer"]["model"] == nodes["Trainer"].outputs["model"][0].uri


def test_the_secret_is_nowhere_it_could_leak(s3_run, s3_server):
    secret = s3_server.secret_access_key
    for done in (s3_run.run, s3_run.lineage, s3_run.store_lineage):
        assert secret not in done.stdout and secret not in done.stderr
    assert secret.encode() not in Path(s3_run.config.metadata_path).read_bytes()
    assert secret not in s3_run.config_path.read_text()
    objects = [(s3_server.bucket, k) for k in s3_server.keys(prefix="e2e/run/")]
    objects += [(SERVING_BUCKET, k) for k in s3_server.keys(SERVING_BUCKET, "e2e/")]
    assert len(objects) > 30  # examples, statistics, models, evaluation, report
    for bucket, key in objects:
        assert secret.encode() not in s3_server.read(key, bucket), key


@pytest.mark.parametrize("case", ["missing bucket", "wrong secret", "unreachable endpoint"])
def test_a_bad_store_fails_the_run_naming_uri_and_cause(s3_server, tmp_path, case):
    config = s3_config(s3_server, tmp_path, f"bad-{case.split()[0]}")
    env = dict(s3_server.env)
    if case == "missing bucket":
        config = dataclasses.replace(config, push_destination="s3://no-such-bucket/serving")
        expected = (
            "error: The bucket does not exist (create it first) for "
            "config.push_destination='s3://no-such-bucket/serving' (bucket 'no-such-bucket' "
            f"at {s3_server.endpoint})."
        )
    elif case == "wrong secret":
        env["AWS_SECRET_ACCESS_KEY"] = "wrong-secret-value"
        expected = (
            "error: Access denied: the server rejected the credentials (AWS_ACCESS_KEY_ID/"
            "AWS_SECRET_ACCESS_KEY) or they lack permission on the bucket for "
            f"config.root='{config.root}'"
        )
    else:
        env["S3_ENDPOINT"] = f"http://127.0.0.1:{free_port()}"
        expected = f"error: Cannot reach the S3 endpoint for config.root='{config.root}'"
    done = cli(["run", "--config", str(write_config(config, tmp_path))], env, timeout=300)
    assert done.returncode == 1, done.stderr[-3000:]
    assert expected in done.stderr
    assert "wrong-secret-value" not in done.stderr
    assert done.seconds < 120  # not tensorflow-io's minutes of retries
    # Nothing ran, nothing was published.
    assert not Path(config.metadata_path).exists()
    assert s3_server.keys(prefix=config.root.removeprefix(s3_server.uri())) == []
