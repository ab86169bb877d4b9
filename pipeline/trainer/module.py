"""TFX Trainer ``run_fn``: fine-tune the regularized backbone with a new classification head.

Wired as ``Trainer(run_fn=RUN_FN, base_model=regularizer.outputs["model"],
custom_config=TrainerConfig(...).to_dict())``, ``RUN_FN`` from
``backbone_regularizer.pipeline.trainer``. Steps: refuse a base model that is not the verified
one, build head, optional head-only warm-up, fine-tune with early stopping on the validation
cross-entropy (best weights restored), check BatchNorm statistics did not move, write
TensorBoard logs, curves and a summary into ``model_run_dir``, export for serving.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile

import keras
import numpy as np
import tensorflow as tf
from absl import logging
from tfx.dsl.io import fileio

from backbone_regularizer.components.regularizer.penalties import head_l2
from backbone_regularizer.pipeline.trainer import baselines as baseline_models
from backbone_regularizer.pipeline.trainer.base_model import load_base_model
from backbone_regularizer.pipeline.trainer.config import TrainerConfig
from backbone_regularizer.pipeline.trainer.data import make_dataset
from backbone_regularizer.pipeline.trainer.distribution import (
    barrier,
    check_keras_multi_worker,
    is_chief,
    replica_datasets,
    resolve_devices,
    trainer_settings,
    worker_outputs,
)
from backbone_regularizer.pipeline.trainer.export import export_serving_model
from backbone_regularizer.pipeline.trainer.head import pooled_features
from backbone_regularizer.pipeline.trainer.progress import console_progress, keras_callback
from backbone_regularizer.pipeline.trainer.provenance import recorded_training

SUMMARY_FILE = "training_summary.json"
MONITOR = "val_crossentropy"
CURVES_FILE = "training_curves.png"


@contextlib.contextmanager
def dtype_policy(name: str):
    """Set Keras' global dtype policy for new layers, restored on exit (no leaked state)."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def batchnorm_layers(model: keras.Model) -> list[keras.layers.BatchNormalization]:
    return [
        layer
        for layer in model._flatten_layers()
        if isinstance(layer, keras.layers.BatchNormalization)
    ]


def moving_statistics(model: keras.Model) -> dict[str, np.ndarray]:
    return {
        f"{layer.name}/{v.name}": np.array(v.numpy())
        for layer in batchnorm_layers(model)
        for v in (layer.moving_mean, layer.moving_variance)
    }


def build_classifier(
    base: keras.Model, config: TrainerConfig, mixed_precision: bool
) -> keras.Model:
    """Head on the backbone: pooling chosen from its output (``trainer_head``), Dropout, Dense."""
    if mixed_precision:
        # Float32 variables, float16 compute: the loaded layers keep their weights and
        # regularizers; only their compute dtype changes.
        for layer in base._flatten_layers():
            layer.dtype_policy = "mixed_float16"
    inputs = keras.Input((*config.image_size, 3), name="image")
    features = pooled_features(base(inputs), config.pooling, config.backbone_output)
    features = keras.layers.Dropout(config.dropout, seed=config.seed, name="head_dropout")(features)
    # Softmax in float32 for numerical stability under mixed precision.
    outputs = keras.layers.Dense(
        config.num_classes,
        activation="softmax",
        dtype="float32",
        kernel_initializer=keras.initializers.GlorotUniform(seed=config.seed),
        # L2-SP's beta on the new head: beta/2 * sum(w**2).
        kernel_regularizer=head_l2(config.head_beta) if config.head_beta else None,
        name="head",
    )(features)
    return keras.Model(inputs, outputs, name="classifier")


def _optimizer(
    config: TrainerConfig, mixed_precision: bool, learning_rate: float
) -> keras.optimizers.Optimizer:
    optimizer = keras.optimizers.Adam(learning_rate, weight_decay=config.weight_decay or None)
    if config.weight_decay:
        # Decoupled decay on kernels only, as in AdamW; matches short variable names.
        optimizer.exclude_from_weight_decay(var_names=["bias", "gamma", "beta"])
    if mixed_precision:
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer


def _set_trainable(base: keras.Model, flags: dict[int, bool], unfreeze_from: str | None):
    """Restore the regularizer's freeze policy, then freeze everything before ``unfreeze_from``.

    Parents come before children in ``_flatten_layers``, so a child's own flag wins over the
    recursive setter of its parent. BatchNorm stays frozen whatever the flags say.
    """
    layers = base._flatten_layers()
    for layer in layers:
        layer.trainable = flags[id(layer)]
    if unfreeze_from is not None:
        names = [layer.name for layer in layers]
        if unfreeze_from not in names:
            raise ValueError(
                "Invalid trainer setting `unfreeze_from`. Expected a layer of the backbone. "
                f"Received: unfreeze_from={unfreeze_from!r}"
            )
        for layer in layers[1 : names.index(unfreeze_from)]:
            layer.trainable = False
    for layer in batchnorm_layers(base):
        layer.trainable = False


def _fit(model, config, train, evaluation, epochs, mixed, callbacks, label, learning_rate):
    model.compile(
        optimizer=_optimizer(config, mixed, learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(),
        metrics=[
            keras.metrics.SparseCategoricalAccuracy(name="accuracy"),
            # Keras' val_loss includes the regularization penalty, which shrinks as the
            # weights do and is absent while the backbone is frozen: it is not comparable
            # across epochs or phases. Select epochs on the data loss alone.
            keras.metrics.SparseCategoricalCrossentropy(name="crossentropy"),
        ],
        jit_compile=config.jit_compile,
    )
    logging.info(
        "%s: %d epochs at learning rate %g, %d trainable weights, %d penalty terms in the loss",
        label,
        epochs,
        learning_rate,
        len(model.trainable_weights),
        len(model.losses),
    )
    return model.fit(
        train, validation_data=evaluation, epochs=epochs, callbacks=callbacks, verbose=2
    )


def train(
    base: keras.Model,
    report: dict,
    config: TrainerConfig,
    train_files,
    eval_files,
    model_run_dir: str,
    strategy: tf.distribute.Strategy,
    mixed: bool,
) -> tuple[keras.Model, dict]:
    """Fine-tune ``base`` on the examples; return the classifier and a summary (plain Keras).

    ``base`` must have been loaded inside ``strategy.scope()`` so its variables are mirrored.
    """
    keras.utils.set_random_seed(config.seed)
    warnings = []
    regularized_kernels = {w["kind"] for w in report["regularized"]} & {"kernel", "depthwise"}
    if config.weight_decay and report["regularizer"]["config"].get("l2") and regularized_kernels:
        message = (
            f"weight_decay={config.weight_decay} is combined with "
            f"{report['regularizer_summary']} penalties on the same kernels: both shrink them"
        )
        logging.warning(message)
        warnings.append(message)
    for layer in batchnorm_layers(base):
        layer.trainable = False  # keras 3.12 ignores training=False for BN inside fit()
    flags = {id(layer): layer.trainable for layer in base._flatten_layers()}
    data = dict(
        image_size=config.image_size,
        preprocessing_module=config.preprocessing_module,
        batch_size=config.batch_size,
    )
    train_ds = make_dataset(
        train_files, training=True, augment=config.augment, seed=config.seed, **data
    )
    eval_ds = make_dataset(eval_files, training=False, **data)
    train_ds, eval_ds = replica_datasets(train_ds, eval_ds, config.batch_size, strategy)
    before = moving_statistics(base)
    baselines = None
    if config.baselines:
        # Before any training: the probe is what the pre-trained features give unchanged.
        plain_train = make_dataset(train_files, training=False, **data)
        baselines = baseline_models.run_baselines(
            base, plain_train, eval_ds, config.seed, config.pooling, config.backbone_output
        )
        logging.info("baselines on this split: %s", baseline_models.summary_entry(baselines))
    with dtype_policy("mixed_float16" if mixed else keras.config.dtype_policy().name):
        with strategy.scope():
            classifier = build_classifier(base, config, mixed)
    if config.head_init == "probe":
        # The probe was fitted on the features the head sees (same pooling and output), so
        # its weights fit the head; a mismatch is a bug and fails the run.
        baseline_models.init_head_from_probe(
            classifier.get_layer("head"), baselines["probe_model"], config.num_classes
        )
    history: dict[str, list[float]] = {}
    tensorboard = keras.callbacks.TensorBoard(log_dir=os.path.join(model_run_dir, "logs"))
    # One progress line for all epochs on `backbone-reg run`'s console (none elsewhere).
    progress = console_progress(config.warmup_epochs + config.epochs)
    shown = [keras_callback(progress)] if progress else []
    with strategy.scope():
        if config.warmup_epochs:
            base.trainable = False
            result = _fit(
                classifier,
                config,
                train_ds,
                eval_ds,
                config.warmup_epochs,
                mixed,
                [tensorboard, *shown],
                "warm-up (head only)",
                config.warmup_learning_rate or config.learning_rate,
            )
            for key, values in result.history.items():
                history.setdefault(key, []).extend(values)
        _set_trainable(base, flags, config.unfreeze_from)
        stopper = keras.callbacks.EarlyStopping(
            monitor=MONITOR, mode="min", patience=config.patience, restore_best_weights=True
        )
        result = _fit(
            classifier,
            config,
            train_ds,
            eval_ds,
            config.epochs,
            mixed,
            [stopper, tensorboard, *shown],
            "fine-tuning",
            config.learning_rate,
        )
    if progress:
        progress.finish()
    for key, values in result.history.items():
        history.setdefault(key, []).extend(values)
    # The restored weights are the best epoch of the fine-tuning phase.
    best = config.warmup_epochs + int(np.argmin(result.history[MONITOR]))
    moved = [
        name
        for name, value in moving_statistics(base).items()
        if not np.array_equal(value, before[name])
    ]
    if moved:
        raise RuntimeError(
            f"Expected BatchNormalization moving statistics to stay fixed during fine-tuning. "
            f"Received: {len(moved)} changed, e.g. {moved[:3]}"
        )
    summary = {
        "epochs_run": len(history["loss"]),
        "best_epoch": best + 1,
        "best_val_crossentropy": float(history[MONITOR][best]),
        "val_accuracy_at_best": float(history["val_accuracy"][best]),
        "train_accuracy_at_best": float(history["accuracy"][best]),
        "penalty_terms_in_loss": len(classifier.losses),
        "penalty_at_end": float(sum(float(x) for x in classifier.losses)),
        "batchnorm_statistics_unchanged": len(before),
        "mixed_precision": mixed,
        "strategy": type(strategy).__name__,
        "replicas": strategy.num_replicas_in_sync,
        "warnings": warnings,
        "baselines": baseline_models.summary_entry(baselines) if baselines else None,
        "history": history,
        "config": config.to_dict(),
    }
    summary["train_val_gap_at_best"] = (
        summary["train_accuracy_at_best"] - summary["val_accuracy_at_best"]
    )
    return classifier, summary


def write_curves(history: dict[str, list[float]], path: str) -> None:
    """Loss and accuracy per epoch, train vs validation, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    for ax, metric in zip(axes, ("loss", "accuracy"), strict=True):
        ax.plot(history[metric], label=f"train {metric}")
        ax.plot(history[f"val_{metric}"], label=f"validation {metric}")
        ax.set_xlabel("epoch")
        ax.set_title(metric)
        ax.legend()
    fig.tight_layout()
    with tempfile.TemporaryDirectory() as tmp:
        local = os.path.join(tmp, CURVES_FILE)
        fig.savefig(local, dpi=100)
        plt.close(fig)
        fileio.copy(local, path, overwrite=True)


def run_fn(fn_args) -> None:
    """TFX Trainer entry point (GenericExecutor).

    With ``distribution: "multi_worker"`` every worker calls it with the same ``fn_args`` and
    its own ``TF_CONFIG``: all train together, only the chief writes ``serving_model_dir``
    and ``model_run_dir`` (``distribution.worker_outputs``), and none returns before the
    chief has written them (``distribution.barrier``). The chief writes the provenance
    records last (docs/provenance.md).
    """
    config = TrainerConfig.from_dict(trainer_settings(fn_args.custom_config))
    strategy, mixed = resolve_devices(config)
    check_keras_multi_worker(strategy)
    with recorded_training(fn_args, write=is_chief(strategy)):
        _train_and_export(fn_args, config, strategy, mixed)
    barrier(strategy)


def _train_and_export(fn_args, config: TrainerConfig, strategy, mixed: bool) -> None:
    with strategy.scope():
        base, report = load_base_model(fn_args, config.custom_modules)
    logging.info(
        "base model verified: %s, weights sha256 %s",
        report["regularizer_summary"],
        report["checksums"]["weights_sha256"],
    )
    with worker_outputs(strategy, fn_args.serving_model_dir, fn_args.model_run_dir) as (
        serving_model_dir,
        model_run_dir,
    ):
        classifier, summary = train(
            base,
            report,
            config,
            fn_args.train_files,
            fn_args.eval_files,
            model_run_dir,
            strategy,
            mixed,
        )
        fileio.makedirs(model_run_dir)
        write_curves(summary["history"], os.path.join(model_run_dir, CURVES_FILE))
        with fileio.open(os.path.join(model_run_dir, SUMMARY_FILE), "w") as handle:
            handle.write(json.dumps(summary, indent=2))
        export_serving_model(
            classifier, serving_model_dir, config.image_size, config.preprocessing_module
        )
