"""LatestPushedModel: the production model to compare a candidate against, without a Resolver.

``LatestPushedModel`` (the TFX component, which also checks the label maps, see
``comparison``) and ``Evaluator`` (TFX's, with the per-class guard requiring the production
model's classes, see ``guard``) are imported lazily so that importing this package does not
pull in TFX.
"""

_EXPORTS = {
    "LatestPushedModel": "component",
    "latest_pushed_version": "component",
    "Evaluator": "evaluator",
}
__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        import importlib

        module = importlib.import_module(f"{__name__}.{_EXPORTS[name]}")
        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
