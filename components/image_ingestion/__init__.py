"""ImageExampleGen: ingest a folder of labelled image folders into TFX as tf.Examples.

The folder logic (``images``, ``labels`` (the label vocabulary), ``spans`` (with the window of
spans), ``splits`` (with the holdout), ``plan`` (what one run ingests), ``report``) is usable
without a pipeline;
``ImageExampleGen`` (the TFX component) is imported lazily so that importing those modules does
not pull in the component machinery.
"""

__all__ = ["ImageExampleGen"]


def __getattr__(name: str):
    if name == "ImageExampleGen":
        from backbone_regularizer.components.image_ingestion.component import ImageExampleGen

        return ImageExampleGen
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
