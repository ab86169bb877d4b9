"""LatestPushedModel: the production model to compare a candidate against, without a Resolver.

``LatestPushedModel`` (the TFX component) is imported lazily so that importing this package
does not pull in TFX.
"""

__all__ = ["LatestPushedModel", "latest_pushed_version"]


def __getattr__(name: str):
    if name in __all__:
        from backbone_regularizer.components.latest_pushed import component

        return getattr(component, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
