"""TFX Trainer ``run_fn``: fine-tune the regularized backbone with a new classification head.

Wired as ``Trainer(run_fn=RUN_FN, base_model=regularizer.outputs["model"],
custom_config=TrainerConfig(...).to_dict())``, ``RUN_FN`` from
``backbone_regularizer.pipeline.trainer``. Steps: refuse a base model that is not the verified
one, baselines on bounded samples, build head (initialized from the linear probe), evaluate
the start like an epoch, optional head-only warm-up, fine-tune with early stopping on the
validation cross-entropy (the best epoch's weights restored, the start included), check
BatchNorm statistics did not move, write TensorBoard logs, curves and a summary into
``model_run_dir``, export for serving. Every epoch is checkpointed under ``model_run_dir``;
a retried step resumes after the last one (``checkpoint``, docs/retries.md).
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
from backbone_regularizer.pipeline.trainer.checkpoint import (
    EpochCheckpoint,
    PhasePlan,
    TrainingCheckpoint,
    fingerprint,
    skip_epochs,
)
from backbone_regularizer.pipeline.trainer.config import TrainerConfig
from backbone_regularizer.pipeline.trainer.data import list_files, make_dataset
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
from backbone_regularizer.pipeline.trainer.sample import stratified_sample
from backbone_regularizer.pipeline.trainer.selection import BestEpoch, evaluate_start

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


def _compile(model, config, mixed, learning_rate):
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


def _fit(
    model, config, train, evaluation, epochs, mixed, callbacks, label, learning_rate, plan=None
):
    """Compile and fit one phase; ``plan`` (``checkpoint.PhasePlan``): where an interrupted
    run left this phase (its epochs done, the optimizer state to restore)."""
    _compile(model, config, mixed, learning_rate)
    if plan is not None and plan.restore_optimizer:
        plan.restore_optimizer(model)
    logging.info(
        "%s: %d epochs at learning rate %g, %d trainable weights, %d penalty terms in the loss",
        label,
        epochs,
        learning_rate,
        len(model.trainable_weights),
        len(model.losses),
    )
    return model.fit(
        train,
        validation_data=evaluation,
        epochs=epochs,
        initial_epoch=plan.initial_epoch if plan else 0,
        callbacks=callbacks,
        verbose=2,
    )


@contextlib.contextmanager
def data_cache_dir(cache: str, model_run_dir: str):
    """``<model_run_dir>/data-cache`` for ``cache="disk"`` (else None): emptied first (a
    retried step may have left a partial cache), removed on exit."""
    if cache != "disk":
        yield None
        return
    folder = os.path.join(model_run_dir, "data-cache")
    if fileio.exists(folder):
        fileio.rmtree(folder)
    fileio.makedirs(folder)
    try:
        yield folder
    finally:
        fileio.rmtree(folder)


def _baselines(base, config: TrainerConfig, train_files, eval_files) -> dict:
    """The baselines on bounded stratified samples of both splits (see ``baselines``)."""
    samples = [
        stratified_sample(
            list_files(files), config.num_classes, config.baseline_max_examples, config.seed
        )
        for files in (train_files, eval_files)
    ]
    for name, sample in zip(("train", "eval"), samples, strict=True):
        logging.info(
            "baselines: %s sample of %d of %d examples (at most %d per class)",
            name,
            sample.size,
            sample.split_size,
            config.baseline_max_examples // config.num_classes,
        )
    return baseline_models.run_baselines(
        base,
        *samples,
        image_size=config.image_size,
        preprocessing=config.preprocessing_module,
        pixel_size=config.baseline_image_size,
        seed=config.seed,
        pooling=config.pooling,
        backbone_output=config.backbone_output,
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
    checkpoint: TrainingCheckpoint | None = None,
) -> tuple[keras.Model, dict]:
    """Fine-tune ``base`` on the examples; return the classifier and a summary (plain Keras).

    ``base`` must have been loaded inside ``strategy.scope()`` so its variables are mirrored.
    The run ends with the weights of its best epoch on the eval split's cross-entropy, the
    starting model included (``selection.BestEpoch``).

    With a ``checkpoint`` (``checkpoint.TrainingCheckpoint``, what ``run_fn`` passes) the
    state of every epoch is saved, and a checkpoint an interrupted attempt left is resumed:
    its epochs, baselines and start are not run again, the next epoch sees the data an
    uninterrupted run would, and the summary lists the attempts (docs/retries.md).
    """
    with data_cache_dir(config.cache, model_run_dir) as cache_dir:
        return _train(
            base,
            report,
            config,
            train_files,
            eval_files,
            model_run_dir,
            strategy,
            mixed,
            cache_dir,
            checkpoint,
        )


def _train(
    base,
    report,
    config,
    train_files,
    eval_files,
    model_run_dir,
    strategy,
    mixed,
    cache_dir,
    checkpoint,
):
    keras.utils.set_random_seed(config.seed)
    # A checkpoint left by an interrupted attempt of this step: resume after its last epoch.
    resume = checkpoint.begin_attempt() if checkpoint else None
    logs_dir = os.path.join(model_run_dir, "logs")
    if checkpoint and resume is None and fileio.exists(logs_dir):
        fileio.rmtree(logs_dir)  # an attempt killed before its first epoch ended
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
        cache=config.cache,
        cache_dir=cache_dir,
        shuffle_buffer=config.shuffle_buffer,
    )
    train_ds = make_dataset(
        train_files, training=True, augment=config.augment, seed=config.seed, **data
    )
    eval_ds = make_dataset(eval_files, training=False, **data)
    train_ds, eval_ds = replica_datasets(train_ds, eval_ds, config.batch_size, strategy)
    before = moving_statistics(base)
    baselines = baselines_entry = None
    if config.baselines and resume:
        baselines_entry = resume.extra["baselines"]  # fitted by the interrupted attempt
    elif config.baselines:
        # Before any training: the probe is what the pre-trained features give unchanged.
        baselines = _baselines(base, config, train_files, eval_files)
        baselines_entry = baseline_models.summary_entry(baselines)
        logging.info("baselines: %s", baselines_entry)
    with dtype_policy("mixed_float16" if mixed else keras.config.dtype_policy().name):
        with strategy.scope():
            classifier = build_classifier(base, config, mixed)
    if config.head_init == "probe" and resume is None:
        # The probe was fitted on the features the head sees (same pooling and output), so
        # its weights fit the head; a mismatch is a bug and fails the run.
        baseline_models.init_head_from_probe(
            classifier.get_layer("head"),
            baselines["probe_model"],
            config.num_classes,
            baselines["probe_train_features"],
        )
    history: dict[str, list[float]] = dict(resume.extra["history"]) if resume else {}
    tensorboard = keras.callbacks.TensorBoard(log_dir=logs_dir)
    # One progress line for all epochs on `backbone-reg run`'s console (none elsewhere).
    progress = console_progress(config.warmup_epochs + config.epochs)
    shown = [keras_callback(progress)] if progress else []
    if resume:
        start = resume.extra["start"]
        keeper = BestEpoch(MONITOR, start["crossentropy"], None, config.patience)
    else:
        # The start is evaluated like an epoch: the first candidate for the best weights.
        start = evaluate_start(classifier, eval_ds)
        logging.info("start (before training): %s", start)
        keeper = BestEpoch(
            MONITOR, start["crossentropy"], classifier.get_weights(), config.patience
        )
    saver = EpochCheckpoint(
        checkpoint, keeper, history, {"start": start, "baselines": baselines_entry}
    )
    with strategy.scope():
        if resume:
            resume.restore(classifier, keeper)
            skip_epochs(train_ds, resume.epochs)  # the data order of an uninterrupted run
        else:
            saver.save_start(classifier)
        warmup_rate = config.warmup_learning_rate or config.learning_rate
        phases = {  # name: epochs, label, learning rate
            "warm-up": (config.warmup_epochs, "warm-up (head only)", warmup_rate),
            "fine-tuning": (config.epochs, "fine-tuning", config.learning_rate),
        }
        for name, (epochs, label, learning_rate) in phases.items():
            plan = resume.plan(name, epochs, list(phases)) if resume else PhasePlan()
            if not epochs or plan.done:
                continue
            if name == "warm-up":
                base.trainable = False
            else:
                _set_trainable(base, flags, config.unfreeze_from)
            stopping = name == "fine-tuning"
            callbacks = [
                keeper.phase(name, stopping=stopping, resumed=plan.resumed),
                saver.phase(name),  # after the keeper: it saves the keeper's state too
                tensorboard,
                *shown,
            ]
            result = _fit(
                classifier,
                config,
                train_ds,
                eval_ds,
                epochs,
                mixed,
                callbacks,
                label,
                learning_rate,
                plan,
            )
            for key, values in result.history.items():
                history.setdefault(key, []).extend(values)
        # The fine-tuning flags, also when a resumed attempt had no phase left to run.
        _set_trainable(base, flags, config.unfreeze_from)
        keeper.restore(classifier)
    if progress:
        progress.finish()
    logging.info("best: %s, %s %.4f", keeper.describe(), MONITOR, keeper.best)
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
    if keeper.best_epoch == 0:
        # The start's accuracy on the training split is not measured: it would cost a pass.
        val_accuracy, train_accuracy = start["accuracy"], None
    else:
        index = keeper.best_epoch - 1
        val_accuracy, train_accuracy = history["val_accuracy"][index], history["accuracy"][index]
    summary = {
        "epochs_run": len(history["loss"]),
        "best_epoch": keeper.best_epoch,  # 0: the start
        "best": keeper.describe(),
        "best_val_crossentropy": keeper.best,
        "val_accuracy_at_best": float(val_accuracy),
        "train_accuracy_at_best": None if train_accuracy is None else float(train_accuracy),
        "train_val_gap_at_best": (
            None if train_accuracy is None else float(train_accuracy - val_accuracy)
        ),
        "start": {
            "val_crossentropy": float(start["crossentropy"]),
            "val_accuracy": float(start["accuracy"]),
        },
        "penalty_terms_in_loss": len(classifier.losses),
        "penalty_at_end": float(sum(float(x) for x in classifier.losses)),
        "batchnorm_statistics_unchanged": len(before),
        "mixed_precision": mixed,
        "strategy": type(strategy).__name__,
        "replicas": strategy.num_replicas_in_sync,
        "warnings": warnings,
        "baselines": baselines_entry if config.baselines else None,
        "history": history,
        "config": config.to_dict(),
    }
    if checkpoint:
        summary["attempts"] = checkpoint.report()
    return classifier, summary


def training_fingerprint(config: TrainerConfig, report: dict, train_files, eval_files) -> str:
    """What makes a checkpoint this training's: the settings, the base model's weights and
    the examples (``checkpoint.fingerprint``)."""
    return fingerprint(
        {
            "config": config.to_dict(),
            "base_weights_sha256": report["checksums"]["weights_sha256"],
            "train_files": train_files,
            "eval_files": eval_files,
        }
    )


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
    class_names = config.class_names()  # fails now, not after training, without classes
    strategy, mixed = resolve_devices(config)
    check_keras_multi_worker(strategy)
    with recorded_training(fn_args, write=is_chief(strategy)):
        _train_and_export(fn_args, config, class_names, strategy, mixed)
    barrier(strategy)


def _train_and_export(
    fn_args, config: TrainerConfig, class_names: list[str], strategy, mixed: bool
) -> None:
    with strategy.scope():
        base, report = load_base_model(fn_args, config.custom_modules)
    logging.info(
        "base model verified: %s, weights sha256 %s",
        report["regularizer_summary"],
        report["checksums"]["weights_sha256"],
    )
    # Under the Trainer's own ModelRun folder (a retried step gets the same one): every
    # worker reads it, the chief writes it.
    checkpoint = TrainingCheckpoint(
        fn_args.model_run_dir,
        training_fingerprint(config, report, fn_args.train_files, fn_args.eval_files),
        writer=is_chief(strategy),
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
            checkpoint,
        )
        fileio.makedirs(model_run_dir)
        write_curves(summary["history"], os.path.join(model_run_dir, CURVES_FILE))
        with fileio.open(os.path.join(model_run_dir, SUMMARY_FILE), "w") as handle:
            handle.write(json.dumps(summary, indent=2))
        export_serving_model(
            classifier,
            serving_model_dir,
            config.image_size,
            config.preprocessing_module,
            class_names,
        )
    checkpoint.finish()  # the model is exported: nothing left to resume
