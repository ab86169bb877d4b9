"""The pipeline's configuration: one typed, validated place, loadable from a JSON file.

The defaults are the embedded demo (`make run`): digits 5-9 fine-tuned from a MobileNetV2
pre-trained on digits 0-4 (``backbone_regularizer.pipeline.demo.source_backbone``), all under
``runs/demo``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported where used: they import Keras, and reading a path should not
    from backbone_regularizer.components.regularizer.spec import RegularizationSpec
    from backbone_regularizer.pipeline.trainer.config import TrainerConfig

# The demo's pre-trained, truncated MobileNetV2 (built by backbone_regularizer.pipeline.demo.data
# on first use).
DEMO_BACKBONE = "runs/demo/data/source_backbone"
_KFP_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,127}$")


def _fail(name: str, expected: str, value: Any) -> None:
    raise ValueError(f"Invalid config `{name}`. Expected {expected}. Received: {name}={value!r}")


DEFAULT_INPUT_SHAPE = (32, 32, 3)


@dataclasses.dataclass(frozen=True)
class BackboneConfig:
    """Where the backbone comes from: keras.applications or a KerasHub preset (both through
    BackboneLoader), or a ready .keras file (Importer). At most one of ``keras_hub_preset``
    and ``keras_file``; without either, ``architecture`` is built.

    Args:
        architecture: keras.applications class name.
        input_shape: [height, width, channels]; defaults to [32, 32, 3] for an architecture.
            With a preset: null keeps the preset's image shape, a value overrides it.
        weights: "imagenet", "none" (the default) or the path/URI of a ``.weights.h5`` file;
            with a preset: "preset" (its own weights; what the default becomes) or "none".
        kwargs: extra constructor arguments (e.g. ``{"alpha": 0.35}``); ignored for a preset.
        keras_file: path/URI of a folder holding ``Format-Serving/model.keras``, imported with
            ``tfx.dsl.Importer`` instead of building from ``architecture``.
        keras_hub_preset: a KerasHub preset for ``keras_hub.models.Backbone.from_preset``: a
            built-in name, a ``kaggle://``/``hf://`` handle, or the path/URI of a directory
            written by ``backbone.save_to_preset(dir)`` (local, ``gs://``, ``s3://``).
    """

    architecture: str = "MobileNetV2"
    input_shape: tuple[int, int, int] | None = None
    weights: str | None = None
    kwargs: dict = dataclasses.field(default_factory=lambda: {"alpha": 0.35})
    keras_file: str | None = None
    keras_hub_preset: str | None = None

    def __post_init__(self):
        preset = self.keras_hub_preset
        shape = self.input_shape
        if shape is None and preset is None:
            shape = DEFAULT_INPUT_SHAPE
        if shape is not None and (not isinstance(shape, (list, tuple)) or len(shape) != 3):
            _fail("backbone.input_shape", "[height, width, channels]", shape)
        object.__setattr__(self, "input_shape", None if shape is None else tuple(shape))
        if preset is None:
            if self.weights is None:
                object.__setattr__(self, "weights", "none")
            return
        if not isinstance(preset, str) or not preset:
            _fail("backbone.keras_hub_preset", "a preset name, path or URI", preset)
        if self.keras_file is not None:
            _fail(
                "backbone.keras_hub_preset",
                "null when `backbone.keras_file` is set (one source only)",
                preset,
            )
        if self.weights is None:
            object.__setattr__(self, "weights", "preset")
        if self.weights not in ("preset", "none"):
            _fail("backbone.weights", "'preset' or 'none' with `keras_hub_preset`", self.weights)


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
    """Everything ``create_pipeline`` needs. Relative paths resolve against the working dir.

    Args:
        pipeline_name: valid on Kubeflow: ``[a-z0-9][a-z0-9-]{0,127}``.
        root: run folder or ``s3://``/``gs://`` URI: pipeline root, run reports and pushed
            models, and ML Metadata (sqlite) when ``root`` is a local folder.
        data_root: image folder with span folders (``span-1/<label>/*.png``).
        span_pattern: span folder pattern, e.g. ``span-{SPAN}``; null for no spans.
        train_eval_ratio: hash buckets for train and eval.
        backbone: see BackboneConfig.
        regularization: a RegularizationSpec as a dict.
        safe_mode: load models with Keras safe_mode (False only for trusted Lambda layers).
        custom_modules: modules imported before a model is loaded (they register its custom
            classes), by the BackboneRegularizer and the Trainer; ``keras_hub`` is imported
            automatically when a model holds KerasHub classes.
        trainer: a TrainerConfig as a dict (``num_classes`` required).
        min_accuracy: absolute blessing threshold on eval accuracy. The demo's 0.93 is the
            pixel logistic regression on its split (0.933); its recipe scored 0.964-0.979 over
            10 seeds there (``benchmarks/demo_recipe.md``).
        max_accuracy_drop: allowed drop vs the latest pushed model (0.02 = 2 points).
        push_destination: where blessed models are pushed; defaults to ``<root>/serving``.
        metadata: the local ML Metadata sqlite file; defaults to ``<root>/metadata.sqlite``.
            Required when ``root`` is a URI: sqlite needs a local file.
        beam_args: Beam pipeline args of the Beam steps (ImageExampleGen, StatisticsGen,
            Evaluator), locally and in the compiled Kubeflow spec; e.g.
            ``["--direct_running_mode=multi_processing", "--direct_num_workers=2"]`` or a
            Dataflow/Flink runner (docs/scale-out.md).
        shards_per_split: TFRecord files ImageExampleGen writes per split; null derives it:
            about one per 1,000 images, at least one per Beam worker while shards keep ~100
            images, at most 1,024 (``components/image_ingestion/shards.py``). Set it to at
            least the number of training workers when each reads its own shards.
        enable_cache: reuse executions whose inputs did not change.
    """

    pipeline_name: str = "backbone-regularizer-demo"
    root: str = "runs/demo"
    data_root: str = "runs/demo/data/images"
    span_pattern: str | None = "span-{SPAN}"
    train_eval_ratio: tuple[int, int] = (1, 2)
    backbone: BackboneConfig = dataclasses.field(
        default_factory=lambda: BackboneConfig(keras_file=DEMO_BACKBONE)
    )
    regularization: dict = dataclasses.field(
        default_factory=lambda: {"l2_sp": 0.01, "freeze_batchnorm": True}
    )
    safe_mode: bool = True
    custom_modules: tuple[str, ...] = ()
    trainer: dict = dataclasses.field(
        default_factory=lambda: {
            "num_classes": 5,
            "architecture": "MobileNetV2",
            "image_size": [32, 32],
            "head_init": "probe",
            "learning_rate": 3e-4,
            "augment": False,
            "epochs": 30,
            "batch_size": 16,
            "patience": 10,
        }
    )
    min_accuracy: float = 0.93
    max_accuracy_drop: float = 0.02
    push_destination: str | None = None
    metadata: str | None = None
    beam_args: tuple[str, ...] = ("--direct_running_mode=in_memory", "--direct_num_workers=1")
    shards_per_split: int | None = None
    enable_cache: bool = True

    def __post_init__(self):
        if not isinstance(self.pipeline_name, str) or not _KFP_NAME.match(self.pipeline_name):
            _fail("pipeline_name", "a name matching [a-z0-9][a-z0-9-]{0,127}", self.pipeline_name)
        for name in ("root", "data_root"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                _fail(name, "a non-empty path", getattr(self, name))
        self._check_metadata()
        if isinstance(self.backbone, dict):
            object.__setattr__(
                self, "backbone", _from_dict(BackboneConfig, self.backbone, "backbone")
            )
        if not isinstance(self.backbone, BackboneConfig):
            _fail("backbone", "an object", self.backbone)
        for name in ("min_accuracy", "max_accuracy_drop"):
            value = getattr(self, name)
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or not 0 <= value <= 1
            ):
                _fail(name, "a number in [0, 1]", value)
        for name in ("safe_mode", "enable_cache"):
            if not isinstance(getattr(self, name), bool):
                _fail(name, "true or false", getattr(self, name))
        if not isinstance(self.beam_args, (list, tuple)) or not all(
            isinstance(a, str) for a in self.beam_args
        ):
            _fail("beam_args", "a list of strings", self.beam_args)
        object.__setattr__(self, "beam_args", tuple(self.beam_args))
        from backbone_regularizer.components.image_ingestion.shards import (
            MAX_SHARDS,
            check_shards_per_split,
        )

        try:
            check_shards_per_split(self.shards_per_split)
            valid_shards = True
        except ValueError:
            valid_shards = False  # raised below in the config's own words (null, not None)
        if not valid_shards:
            _fail("shards_per_split", f"null or an int in [1, {MAX_SHARDS}]", self.shards_per_split)
        from backbone_regularizer.components.regularizer.custom_modules import check_module_names

        object.__setattr__(self, "custom_modules", check_module_names(self.custom_modules))
        object.__setattr__(self, "train_eval_ratio", tuple(self.train_eval_ratio))
        # Validate the nested specs now, at load time, with their own messages.
        self.regularization_spec()
        self.trainer_config()

    def _check_metadata(self) -> None:
        if self.metadata is not None and (
            not isinstance(self.metadata, str) or not self.metadata or "://" in self.metadata
        ):
            _fail("metadata", "a local sqlite file path (not a URI)", self.metadata)

    def regularization_spec(self) -> RegularizationSpec:
        from backbone_regularizer.components.regularizer.spec import RegularizationSpec

        return RegularizationSpec.from_dict(dict(self.regularization))

    def trainer_config(self) -> TrainerConfig:
        """The Trainer's settings; the pipeline's ``custom_modules`` come first in its own."""
        from backbone_regularizer.components.regularizer.custom_modules import check_module_names
        from backbone_regularizer.pipeline.trainer.config import TrainerConfig

        trainer = dict(self.trainer)
        if self.custom_modules:
            own = check_module_names(trainer.get("custom_modules"))
            trainer["custom_modules"] = [*self.custom_modules, *own]
        return TrainerConfig.from_dict(trainer)

    def path(self, value: str) -> str:
        """Absolute form of a local path; URIs (gs://...) unchanged."""
        return value if "://" in value else os.path.abspath(value)

    @property
    def pipeline_root(self) -> str:
        return self.path(os.path.join(self.root, "pipeline"))

    @property
    def metadata_path(self) -> str:
        """The local runner's sqlite store (KFP has its own ML Metadata and ignores this).

        Raises:
            ValueError: ``root`` is a URI and ``metadata`` is not set: sqlite needs a local file.
        """
        return _metadata_path(self.root, self.metadata, self.pipeline_name)

    @property
    def serving_dir(self) -> str:
        return self.path(self.push_destination or os.path.join(self.root, "serving"))

    def locations(self) -> dict[str, str]:
        """Every place the run reads or writes, by config key (absolute paths or URIs)."""
        found = {
            "root": self.path(self.root),
            "data_root": self.path(self.data_root),
            "push_destination": self.serving_dir,
        }
        backbone = self.backbone
        if backbone.keras_file:
            found["backbone.keras_file"] = self.path(backbone.keras_file)
        elif backbone.keras_hub_preset:
            from backbone_regularizer.components.backbone_loader.presets import (
                LOCAL,
                URI,
                preset_kind,
            )

            # Preset names and hub handles are downloaded by KerasHub, not read from a store.
            if preset_kind(backbone.keras_hub_preset) in (URI, LOCAL):
                found["backbone.keras_hub_preset"] = self.path(backbone.keras_hub_preset)
        elif backbone.weights not in ("imagenet", "none"):
            found["backbone.weights"] = self.path(backbone.weights)
        return found

    def to_dict(self) -> dict:
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_dict(cls, data: dict) -> PipelineConfig:
        return _from_dict(cls, data, "config")

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> PipelineConfig:
        """Load a JSON config; keys not given keep the demo defaults.

        Raises:
            FileNotFoundError: no such file.
            ValueError: invalid JSON, unknown keys or wrong types (named in the message).
        """
        return cls.from_dict(_read_json(path))


def _read_json(path: str | os.PathLike) -> Any:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"Expected a JSON config file. Received: {str(path)!r} (missing)")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"Expected JSON in {str(path)!r}. Received: {err}") from None


def _metadata_path(root: str, metadata: str | None, pipeline_name: str) -> str:
    if metadata:
        return os.path.abspath(metadata)
    if "://" in root:
        _fail(
            "metadata",
            "a local sqlite file path when `root` is a URI (sqlite needs a local file), "
            f'e.g. "runs/{pipeline_name}/metadata.sqlite"',
            metadata,
        )
    return os.path.abspath(os.path.join(root, "metadata.sqlite"))


def metadata_path_of(path: str | os.PathLike | None = None) -> str:
    """The ML Metadata sqlite file of the config file at ``path`` (the demo's without one).

    Reads only ``root``, ``metadata`` and ``pipeline_name``: no check of the rest, which
    would import Keras (``backbone-reg lineage`` needs nothing else).

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: not a JSON object, or ``root`` is a URI and ``metadata`` is not set.
    """
    return _metadata_path(**_location_fields(path))


def local_folder_of(path: str | os.PathLike | None = None) -> str:
    """The run's local folder for the config file at ``path``: ``root`` when it is local,
    else the folder of the ML Metadata file. Read like ``metadata_path_of``.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: not a JSON object, or ``root`` is a URI and ``metadata`` is not set.
    """
    fields = _location_fields(path)
    if isinstance(fields["root"], str) and fields["root"] and "://" not in fields["root"]:
        return os.path.abspath(fields["root"])
    return os.path.dirname(_metadata_path(**fields))


def _location_fields(path: str | os.PathLike | None) -> dict[str, Any]:
    defaults = {f.name: f.default for f in dataclasses.fields(PipelineConfig)}
    data = {} if path is None else _read_json(path)
    if not isinstance(data, dict):
        raise ValueError(f"Expected a JSON object in {os.fspath(path)!r}. Received: {data!r}")
    fields = {k: data.get(k, defaults[k]) for k in ("root", "metadata", "pipeline_name")}
    for name in ("root", "metadata"):
        if fields[name] is not None and not isinstance(fields[name], str):
            _fail(name, "a path", fields[name])
    return fields


def _from_dict(cls, data: Any, where: str):
    if not isinstance(data, dict):
        _fail(where, "a JSON object", data)
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - fields)
    if unknown:
        raise ValueError(
            f"Unknown keys in {where}: {unknown}. Expected keys among {sorted(fields)}."
        )
    try:
        return cls(**data)
    except TypeError as err:
        raise ValueError(f"Invalid {where}: {err}") from None
