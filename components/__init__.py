"""The TFX components of backbone-regularizer, one folder per component: the public API.

Stable names (imported lazily: importing this package loads neither TFX nor TensorFlow):

* ``BackboneLoader``: a headless ``keras.applications`` backbone or a KerasHub preset, as a
  ``Model`` artifact;
* ``BackboneRegularizer``: attaches and verifies the regularizers; its ``model`` output plugs
  into ``Trainer(base_model=...)``;
* ``RegularizationSpec``: what ``BackboneRegularizer(spec=...)`` regularizes and how;
* ``ImageExampleGen``: folders of labelled images (with spans) as tf.Examples;
* ``LatestPushedModel``: the newest pushed model as the Evaluator's baseline, without a
  Resolver node (which open-source KFP cannot run).

The plain-Keras regularization (no TFX) is ``backbone_regularizer.components.regularizer``.
"""

_EXPORTS = {
    "BackboneLoader": "backbone_loader",
    "BackboneRegularizer": "regularizer",
    "RegularizationSpec": "regularizer",
    "ImageExampleGen": "image_ingestion",
    "LatestPushedModel": "latest_pushed",
}
__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        import importlib

        module = importlib.import_module(f"{__name__}.{_EXPORTS[name]}")
        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
