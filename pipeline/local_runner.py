"""Run the pipeline on LocalDagRunner (sqlite ML Metadata, Beam DirectRunner)."""

from __future__ import annotations

import time

from tfx import v1 as tfx

from pipeline.config import PipelineConfig
from pipeline.create_pipeline import create_pipeline, local_metadata
from pipeline.object_store import check_uris, configure_process, s3_uris


def prepare_store(config: PipelineConfig) -> None:
    """With an ``s3://`` location: register ``s3://`` here, check every bucket (idempotent).

    Raises:
        ObjectStoreError: an ``s3://`` bucket is missing, refused the credentials or its
            endpoint is unreachable.
        ValueError: contradicting endpoint/region variables, or a URI without a bucket.
    """
    locations = config.locations()
    if s3_uris(locations):
        configure_process()
        check_uris({f"config.{name}": uri for name, uri in locations.items()})


def run_local(config: PipelineConfig) -> float:
    """Run every node of the pipeline locally; return the wall time in seconds.

    Calls ``prepare_store`` first: with a bad ``s3://`` store nothing runs.
    """
    started = time.perf_counter()
    prepare_store(config)
    pipeline = create_pipeline(config, metadata_connection_config=local_metadata(config))
    tfx.orchestration.LocalDagRunner().run(pipeline)
    return time.perf_counter() - started
