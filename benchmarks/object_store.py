"""The local pipeline on s3:// vs on local paths: same config, same machine, interleaved runs.

The reduced e2e config (60 images, MobileNetV2 a=0.35 32x32, 2 epochs) runs through
``backbone-reg run --json`` in a fresh root each time, alternately with every location local
and with root, images, backbone weights and push destination on ``s3://`` (moto_server on
127.0.0.1, the test suite's server). ``python -m benchmarks.object_store`` writes
``benchmarks/object_store.json``; ``make bench`` includes it.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks import machine

HERE = Path(__file__).parent
CLI = str(Path(sys.executable).with_name("backbone-reg"))


def _config(root: str, data: str, weights: str, serving: str, metadata: Path) -> dict:
    from backbone_regularizer.pipeline.config import BackboneConfig, PipelineConfig

    return PipelineConfig(
        pipeline_name="bench-store",
        root=root,
        data_root=data,
        metadata=str(metadata),
        push_destination=serving,
        train_eval_ratio=(1, 1),
        backbone=BackboneConfig(weights=weights),
        regularization={"l2": 1e-4},
        trainer={"num_classes": 5, "epochs": 2, "batch_size": 16, "augment": False},
        min_accuracy=0.0,
        max_accuracy_drop=1.0,
        max_class_accuracy_drop=1.0,
    ).to_dict()


def _run(config: dict, folder: Path, env: dict[str, str]) -> dict:
    path = folder / "config.json"
    path.write_text(json.dumps(config))
    started = time.perf_counter()
    done = subprocess.run(
        [CLI, "run", "--json", "--config", str(path)],
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **env},
        capture_output=True,
        text=True,
        check=False,
    )
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"backbone-reg run exited {done.returncode}:\n{done.stderr[-3000:]}")
    summary = json.loads(done.stdout)  # with --json, stdout holds the summary alone
    return {"command_s": seconds, "pipeline_s": summary["wall_time_s"], "exit_code": 0}


def local_vs_s3(repeats: int = 2) -> dict:
    """Median wall times of ``repeats`` local and ``repeats`` s3:// runs, alternating."""
    from backbone_regularizer.components.backbone_loader.applications import build_backbone
    from backbone_regularizer.pipeline.demo.data import write_target_span
    from tests import s3_server

    with tempfile.TemporaryDirectory(prefix="bench-store-") as tmp:
        tmp = Path(tmp)
        images = write_target_span(tmp / "images", 1, per_class=12).parent
        weights = tmp / "source.weights.h5"
        build_backbone("MobileNetV2", "none", [32, 32, 3], kwargs={"alpha": 0.35}).save_weights(
            weights
        )
        server, process = s3_server.start(tmp)
        try:
            s3_data = server.upload_tree(images, "images")
            server.client().upload_file(str(weights), server.bucket, "source.weights.h5")
            runs: dict[str, list[dict]] = {"local": [], "s3": []}
            for i in range(repeats):
                for kind in ("local", "s3"):
                    folder = tmp / f"{kind}-{i}"
                    folder.mkdir()
                    if kind == "local":
                        config = _config(
                            str(folder / "run"),
                            str(images),
                            str(weights),
                            str(folder / "serving"),
                            folder / "metadata.sqlite",
                        )
                        env = {}
                    else:
                        config = _config(
                            server.uri(f"run-{i}"),
                            s3_data,
                            server.uri("source.weights.h5"),
                            server.uri(f"serving-{i}"),
                            folder / "metadata.sqlite",
                        )
                        env = server.env
                    runs[kind].append(_run(config, folder, env))
        finally:
            s3_server.stop(process)
    local = statistics.median(r["pipeline_s"] for r in runs["local"])
    s3 = statistics.median(r["pipeline_s"] for r in runs["s3"])
    local_cmd = statistics.median(r["command_s"] for r in runs["local"])
    s3_cmd = statistics.median(r["command_s"] for r in runs["s3"])
    return {
        "repeats": repeats,
        "runs": runs,
        "local_pipeline_s": local,
        "s3_pipeline_s": s3,
        "pipeline_ratio": s3 / local,
        "local_command_s": local_cmd,
        "s3_command_s": s3_cmd,
        "command_ratio": s3_cmd / local_cmd,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args(argv)
    result = local_vs_s3(args.repeats)
    result["machine"] = machine.describe()
    result["measured"] = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    (HERE / "object_store.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
