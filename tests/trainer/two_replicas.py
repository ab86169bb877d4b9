"""Fine-tuning on 1 and on 2 replicas, in a process whose CPU is split into 2 logical devices.

Run by ``tests/trainer/test_distribution.py`` in a fresh process: the split must happen
before TensorFlow initializes its devices, which any earlier test in the same process has
done. ``MirroredStrategy`` then has 2 real replicas, each with its own copy of the variables
and half of every batch: the path a machine with several GPUs takes.

    python -m tests.trainer.two_replicas WORKDIR

``WORKDIR`` holds ``regularized/`` (a BackboneRegularizer output), ``train/`` (16
examples) and ``eval/`` (TFRecords). Written there: ``steps.npz`` (the reference gradient of
one batch on one device, without strategy, and the update one SGD step with learning rate 1
applied on each replica count), ``results.json`` (losses, penalties, histories, replica
counts, BatchNorm statistics that moved, the error for a batch 2 replicas cannot share) and
``serving-1/``, ``serving-2/`` (the exports of ``train()`` on 1 and 2 replicas).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from backbone_regularizer.pipeline.trainer import module as trainer_module
from backbone_regularizer.pipeline.trainer.base_model import load_regularized_base
from backbone_regularizer.pipeline.trainer.config import TrainerConfig
from backbone_regularizer.pipeline.trainer.data import make_dataset
from backbone_regularizer.pipeline.trainer.export import export_serving_model

REPLICAS = 2
# One batch of 16 per epoch (8 per replica; the training split holds 16 examples), so the
# order the training split is shuffled in changes only the order of a sum. Deterministic
# otherwise: no dropout mask or augmentation drawn per replica, a Glorot head, no baselines.
# The warm-up makes train() recompile after unfreezing the backbone, under the strategy.
CONFIG = dict(
    num_classes=2,
    architecture="SmallCNN",
    preprocessing="symmetric",
    batch_size=16,
    learning_rate=1e-2,
    epochs=2,
    warmup_epochs=1,
    head_init="random",
    baselines=False,
    dropout=0.0,
    augment=False,
    head_beta=1e-2,
    mixed_precision="off",
)
DISTRIBUTION = {1: "none", REPLICAS: "mirrored"}


def split_cpu(count: int) -> None:
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(count)]
    )


def classifier_on(strategy, serving: str, config: TrainerConfig):
    """The Trainer's classifier on a freshly loaded base, variables created under ``strategy``."""
    with strategy.scope():
        base, _ = load_regularized_base(serving)
    for layer in trainer_module.batchnorm_layers(base):
        layer.trainable = False  # as train() does
    with strategy.scope():
        classifier = trainer_module.build_classifier(base, config, mixed_precision=False)
    return base, classifier


def reference_gradients(serving: str, config: TrainerConfig, images, labels):
    """Loss and gradients of one batch on one device, by hand: mean cross-entropy + penalties."""
    _, classifier = classifier_on(tf.distribute.get_strategy(), serving, config)
    weights = classifier.trainable_weights
    with tf.GradientTape(persistent=True) as tape:
        probabilities = classifier(images, training=True)
        data_loss = keras.losses.SparseCategoricalCrossentropy()(labels, probabilities)
        penalty = tf.add_n(classifier.losses)
        total = data_loss + penalty
    return {
        "data_loss": float(data_loss),
        "penalty": float(penalty),
        "penalty_terms": len(classifier.losses),
        "total": [g.numpy() for g in tape.gradient(total, weights)],
        "data": [g.numpy() for g in tape.gradient(data_loss, weights)],
    }


def one_step(strategy, serving: str, config: TrainerConfig, images, labels):
    """Keras' own loss and update of one step on this batch under ``strategy``.

    SGD with learning rate 1 applies ``w <- w - g``: the update is the gradient Keras
    computed, summed over replicas.
    """
    base, classifier = classifier_on(strategy, serving, config)
    with strategy.scope():
        classifier.compile(
            optimizer=keras.optimizers.SGD(1.0),
            loss=keras.losses.SparseCategoricalCrossentropy(),
        )
    batch = tf.data.Dataset.from_tensors((images, labels))
    weights = classifier.trainable_weights
    before = [w.numpy() for w in weights]
    statistics = trainer_module.moving_statistics(base)
    evaluated = classifier.evaluate(batch, verbose=0, return_dict=True)["loss"]
    history = classifier.fit(batch, epochs=1, verbose=0).history
    moved = [
        name
        for name, value in trainer_module.moving_statistics(base).items()
        if not np.array_equal(value, statistics[name])
    ]
    return {
        "replicas": strategy.num_replicas_in_sync,
        "evaluate_loss": float(evaluated),
        "fit_loss": float(history["loss"][0]),
        "update": [b - w.numpy() for b, w in zip(before, weights, strict=True)],
        "batchnorm_moved": moved,
    }


def fine_tune(strategy, workdir: Path, config: TrainerConfig) -> dict:
    """``train()`` as ``run_fn`` calls it, then the export, under ``strategy``."""
    replicas = strategy.num_replicas_in_sync
    with strategy.scope():
        base, report = load_regularized_base(str(workdir / "regularized" / "Format-Serving"))
    classifier, summary = trainer_module.train(
        base,
        report,
        config,
        str(workdir / "train" / "*"),
        str(workdir / "eval" / "*"),
        str(workdir / f"run-{replicas}"),
        strategy,
        False,
    )
    export_serving_model(
        classifier,
        str(workdir / f"serving-{replicas}"),
        config.image_size,
        config.preprocessing_module,
    )
    keys = ("replicas", "strategy", "history", "penalty_at_end", "batchnorm_statistics_unchanged")
    return {key: summary[key] for key in keys}


def main(workdir: Path) -> None:
    split_cpu(REPLICAS)
    serving = str(workdir / "regularized" / "Format-Serving")
    config = TrainerConfig(**CONFIG)
    images, labels = next(
        iter(
            make_dataset(
                str(workdir / "train" / "*"),
                config.image_size,
                config.preprocessing_module,
                config.batch_size,
                training=False,
            )
        )
    )
    reference = reference_gradients(serving, config, images, labels)
    steps, fine_tuned = {}, {}
    for replicas, distribution in DISTRIBUTION.items():
        # One strategy per replica count and process, as in run_fn: two MirroredStrategy
        # objects in one process allocate the same collective keys and their all-reduces
        # of different gradient sets collide.
        settings = TrainerConfig(**CONFIG, distribution=distribution)
        strategy, _ = trainer_module.resolve_devices(settings)
        steps[replicas] = one_step(strategy, serving, config, images, labels)
        fine_tuned[replicas] = fine_tune(strategy, workdir, settings)
    arrays = {f"reference_total_{i}": g for i, g in enumerate(reference.pop("total"))}
    arrays |= {f"reference_data_{i}": g for i, g in enumerate(reference.pop("data"))}
    for replicas, step in steps.items():
        arrays |= {f"update_{replicas}_{i}": u for i, u in enumerate(step.pop("update"))}
    np.savez(workdir / "steps.npz", **arrays)
    results = {
        "reference": reference,
        "steps": steps,
        "fine_tune": fine_tuned,
        "logical_cpus": len(tf.config.list_logical_devices("CPU")),
    }
    try:
        uneven = TrainerConfig(**{**CONFIG, "batch_size": 15}, distribution="mirrored")
        trainer_module.resolve_devices(uneven)
    except ValueError as error:
        results["uneven_batch_error"] = str(error)
    (workdir / "results.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
