"""Kubeflow Pipelines: the public API for any TFX pipeline compiled with ``KubeflowV2DagRunner``.

Stable names (imported lazily: importing this package loads neither TFX nor TensorFlow):

* ``apply_kubeflow_fixes(job, ...)``: our step entrypoint in front of TFX's (input types KFP
  omits, ExampleGen's span driver, ``s3://`` checks, exit codes) and the S3 wiring, applied to a
  compiled PipelineJob dict;
* ``resource_spec(cpu, memory_gb, gpu_type, gpus)``: CPU/memory limits and GPUs for
  ``component.with_platform_config(...)``;
* ``write_pipeline_file(job, path)``: ``.json`` PipelineJob or ``.yaml`` PipelineSpec (with the
  Kubernetes platform spec as its second document);
* ``RetryPolicy(retries, trainer_retries, ...)``: KFP's retry policy for every task, more for
  the Trainer (``apply_kubeflow_fixes(job, retries=...)``, ``compile_pipeline(retries=...)``);
* ``ENTRYPOINT_MODULE``: the module every fixed step runs (``python -m ...``);
* ``compile_pipeline(config, ...)``: the reference app's own pipeline, compiled and fixed.

Modules: ``compile`` (the above), ``entrypoint`` (what runs in each container), ``env`` (S3
settings and the in-pod store check), ``retries`` (retry policies), ``schedule`` (recurring
runs).
"""

ENTRYPOINT_MODULE = "backbone_regularizer.pipeline.kubeflow.entrypoint"

_FROM_COMPILE = (
    "apply_kubeflow_fixes",
    "compile_pipeline",
    "resource_spec",
    "write_pipeline_file",
)
__all__ = ["ENTRYPOINT_MODULE", "RetryPolicy", *_FROM_COMPILE]


def __getattr__(name: str):
    if name in _FROM_COMPILE:
        from backbone_regularizer.pipeline.kubeflow import compile as _compile

        return getattr(_compile, name)
    if name == "RetryPolicy":
        from backbone_regularizer.pipeline.kubeflow.retries import RetryPolicy

        return RetryPolicy
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
