"""What the provenance record costs at a realistic size: ImageExampleGen on N 224x224 JPEGs.

Runs the real executor (Beam, DirectRunner) on N JPEG files (``benchmarks/jpeg_data.py``:
about 25 KB each, a user's photo size after resizing), reads its ``provenance.json`` and
reports, in one run: the step's wall time, ``hash_seconds`` (SHA-256 of every output file,
the record's only per-byte cost), their ratio, the bytes hashed, and what a downstream step
pays for this input: reading the digest from the record versus hashing the TFRecords again.

    python -m benchmarks.provenance_overhead --images 20000 --out /tmp/prov-bench
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from benchmarks.jpeg_data import write_jpeg_classes


def run(images: int, out: str) -> dict:
    from tfx.components.example_gen.driver import FileBasedDriver
    from tfx.types import standard_artifacts
    from tfx.utils import proto_utils

    from backbone_regularizer.components import provenance
    from backbone_regularizer.components.image_ingestion import spans, splits
    from backbone_regularizer.components.image_ingestion.executor import Executor

    data = os.path.join(out, "images")
    started = time.perf_counter()
    write_jpeg_classes(Path(data) / "span-1", images)
    write_seconds = time.perf_counter() - started
    jpeg_bytes = sum(p.stat().st_size for p in Path(data).rglob("*.jpg"))
    exec_properties = {
        "input_base": data,
        "input_config": proto_utils.proto_to_json(spans.make_input_config("span-{SPAN}")),
        "output_config": proto_utils.proto_to_json(splits.make_output_config((4, 1))),
        "output_data_format": 6,
        "output_file_format": 5,
    }
    exec_properties = FileBasedDriver(None).resolve_exec_properties(exec_properties, None, None)
    examples = standard_artifacts.Examples()
    examples.uri = os.path.join(out, "examples")
    context = Executor.Context(
        beam_pipeline_args=["--direct_running_mode=multi_processing", "--direct_num_workers=2"]
    )
    started = time.perf_counter()
    Executor(context).Do({}, {"examples": [examples]}, exec_properties)
    step_seconds = time.perf_counter() - started
    record = provenance.read_record(provenance.find_record(examples.uri))
    hashed_bytes = sum(f["bytes"] for f in record["artifact"]["files"].values())
    started = time.perf_counter()
    provenance.input_entry(examples.uri, "Examples")  # downstream: digest from the record
    from_record = time.perf_counter() - started
    started = time.perf_counter()
    provenance.digest_files(examples.uri)  # what it would cost without the record
    rehash = time.perf_counter() - started
    hash_seconds = record["step"]["hash_seconds"]
    return {
        "images": images,
        "jpeg_bytes": jpeg_bytes,
        "write_images_s": round(write_seconds, 1),
        "output_files": len(record["artifact"]["files"]),
        "output_bytes": hashed_bytes,
        "step_s": round(step_seconds, 2),
        "hash_s": hash_seconds,
        "hash_share_of_step": round(hash_seconds / step_seconds, 4),
        "hash_mb_per_s": round(hashed_bytes / 2**20 / max(hash_seconds, 1e-9), 1),
        "downstream_digest_from_record_s": round(from_record, 4),
        "downstream_rehash_s": round(rehash, 2),
        "machine": "2 cores, shared with other agents' test runs (ratios only)",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=20_000)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    print(json.dumps(run(args.images, args.out), indent=2))


if __name__ == "__main__":
    main()
