"""The Trainer side: the public API for a TFX Trainer's ``run_fn``, and our own ``run_fn``.

Stable names (imported lazily: importing this package loads neither TFX nor TensorFlow):

* ``load_base_model(fn_args, custom_modules=())``: the regularized backbone that
  ``Trainer(base_model=regularizer.outputs["model"])`` hands to a ``run_fn``, loaded and
  checked (penalties present, weights' SHA-256 as recorded, L2-SP anchors), with its report;
* ``load_regularized_base(serving_dir, ...)``: the same from a ``Format-Serving`` folder;
* ``report_uri(serving_dir)``: where that report lies;
* ``BaseModelRejected``: what both raise for a model that is not the verified one;
* ``run_fn``: our fine-tuning ``run_fn``, ready to use (``RUN_FN`` is its path for
  ``Trainer(run_fn=RUN_FN)``), configured by ``TrainerConfig(...).to_dict()`` as the
  Trainer's ``custom_config``;
* ``TrainerConfig``;
* ``Trainer``: TFX's Trainer with the Examples' label vocabulary passed to the ``run_fn``
  (``TrainerConfig.labels``) and recorded on the Model (see ``component``).

Modules: ``module`` (``run_fn`` and training), ``base_model``, ``config``, ``data``, ``head``,
``baselines``, ``sample``, ``selection``, ``export`` (the serving signature: probabilities,
class names and scores; ``label_map.json``), ``preprocessing``, ``progress``, and
``component``/``executor``: the pipeline's ``Trainer``, TFX's with the Examples' label
vocabulary passed to the ``run_fn`` (``TrainerConfig.labels``) and recorded on the Model.
"""

RUN_FN = "backbone_regularizer.pipeline.trainer.run_fn"

_EXPORTS = {
    "load_base_model": "base_model",
    "load_regularized_base": "base_model",
    "report_uri": "base_model",
    "BaseModelRejected": "base_model",
    "run_fn": "module",
    "TrainerConfig": "config",
    "Trainer": "component",
}
__all__ = ["RUN_FN", *_EXPORTS]


def __getattr__(name: str):
    if name in _EXPORTS:
        import importlib

        module = importlib.import_module(f"{__name__}.{_EXPORTS[name]}")
        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
