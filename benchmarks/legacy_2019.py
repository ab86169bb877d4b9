"""The widely copied 2019 recipe, ported to Keras 3 as faithfully as it can run there.

Reference only (tests and benchmarks compare against it): it sets ``kernel_regularizer``
on top-level layers that have one, round-trips the model through JSON and reloads the
weights. On Keras 3 ``save_weights`` needs a ``.weights.h5`` name and ``load_weights`` has no
``by_name``. The original wrote to a fixed temp path; this port uses a fresh directory so
parallel tests cannot collide, which is the only liberty taken.
"""

from __future__ import annotations

import os
import tempfile

import keras


def add_regularization_2019(model: keras.Model, regularizer=None) -> keras.Model:
    regularizer = regularizer or keras.regularizers.L2(1e-4)
    if not isinstance(regularizer, keras.regularizers.Regularizer):
        print("Regularizer must be a subclass of keras.regularizers.Regularizer")
        return model
    for layer in model.layers:
        for attr in ["kernel_regularizer"]:
            if hasattr(layer, attr):
                setattr(layer, attr, regularizer)
    model_json = model.to_json()
    with tempfile.TemporaryDirectory() as tmp:
        weights_path = os.path.join(tmp, "tmp.weights.h5")
        model.save_weights(weights_path)
        model = keras.models.model_from_json(model_json)
        model.load_weights(weights_path)
    return model
