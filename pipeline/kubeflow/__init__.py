"""Kubeflow Pipelines: compiling the pipeline (`compile`), scheduling it (`schedule`), and what
runs in each step's container (`entrypoint`, `env`)."""
