"""Run the pipeline on LocalDagRunner (sqlite ML Metadata, Beam DirectRunner)."""

from __future__ import annotations

import time

from tfx import v1 as tfx

from pipeline.config import PipelineConfig
from pipeline.create_pipeline import create_pipeline, local_metadata


def run_local(config: PipelineConfig) -> float:
    """Run every node of the pipeline locally; return the wall time in seconds."""
    started = time.perf_counter()
    pipeline = create_pipeline(config, metadata_connection_config=local_metadata(config))
    tfx.orchestration.LocalDagRunner().run(pipeline)
    return time.perf_counter() - started
