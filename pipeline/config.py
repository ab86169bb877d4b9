"""The pipeline's configuration: one typed, validated place, loadable from a JSON file.

The defaults are the embedded demo (`make run`): digits 5-9 fine-tuned from a MobileNetV2
pre-trained on digits 0-4 (``pipeline.source_backbone``), all under ``runs/demo``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from pathlib import Path
from typing import Any

from components.regularizer.spec import RegularizationSpec
from pipeline.trainer_config import TrainerConfig

# The demo's pre-trained, truncated MobileNetV2 (built by pipeline.demo_data on first use).
DEMO_BACKBONE = "runs/demo/data/source_backbone"
_KFP_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,127}$")


def _fail(name: str, expected: str, value: Any) -> None:
    raise ValueError(f"Invalid config `{name}`. Expected {expected}. Received: {name}={value!r}")


@dataclasses.dataclass(frozen=True)
class BackboneConfig:
    """Where the backbone comes from: keras.applications (BackboneLoader) or a .keras file.

    Args:
        architecture: keras.applications class name.
        input_shape: [height, width, channels].
        weights: "imagenet", "none" or the path/URI of a ``.weights.h5`` file.
        kwargs: extra constructor arguments (e.g. ``{"alpha": 0.35}``).
        keras_file: path/URI of a folder holding ``Format-Serving/model.keras``, imported with
            ``tfx.dsl.Importer`` instead of building from ``architecture``.
    """

    architecture: str = "MobileNetV2"
    input_shape: tuple[int, int, int] = (32, 32, 3)
    weights: str = "none"
    kwargs: dict = dataclasses.field(default_factory=lambda: {"alpha": 0.35})
    keras_file: str | None = None

    def __post_init__(self):
        shape = self.input_shape
        if not isinstance(shape, (list, tuple)) or len(shape) != 3:
            _fail("backbone.input_shape", "[height, width, channels]", shape)
        object.__setattr__(self, "input_shape", tuple(shape))


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
    """Everything ``create_pipeline`` needs. Relative paths resolve against the working dir.

    Args:
        pipeline_name: valid on Kubeflow: ``[a-z0-9][a-z0-9-]{0,127}``.
        root: local run folder: pipeline root, ML Metadata (sqlite) and pushed models.
        data_root: image folder with span folders (``span-1/<label>/*.png``).
        span_pattern: span folder pattern, e.g. ``span-{SPAN}``; null for no spans.
        train_eval_ratio: hash buckets for train and eval.
        backbone: see BackboneConfig.
        regularization: a RegularizationSpec as a dict.
        safe_mode: load models with Keras safe_mode (False only for trusted Lambda layers).
        trainer: a TrainerConfig as a dict (``num_classes`` required).
        min_accuracy: absolute blessing threshold on eval accuracy.
        max_accuracy_drop: allowed drop vs the latest pushed model (0.02 = 2 points).
        push_destination: where blessed models are pushed; defaults to ``<root>/serving``.
        beam_args: Beam pipeline args for data components.
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
    min_accuracy: float = 0.8
    max_accuracy_drop: float = 0.02
    push_destination: str | None = None
    beam_args: tuple[str, ...] = ("--direct_running_mode=in_memory", "--direct_num_workers=1")
    enable_cache: bool = True

    def __post_init__(self):
        if not isinstance(self.pipeline_name, str) or not _KFP_NAME.match(self.pipeline_name):
            _fail("pipeline_name", "a name matching [a-z0-9][a-z0-9-]{0,127}", self.pipeline_name)
        for name in ("root", "data_root"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                _fail(name, "a non-empty path", getattr(self, name))
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
        object.__setattr__(self, "train_eval_ratio", tuple(self.train_eval_ratio))
        # Validate the nested specs now, at load time, with their own messages.
        self.regularization_spec()
        self.trainer_config()

    def regularization_spec(self) -> RegularizationSpec:
        return RegularizationSpec.from_dict(dict(self.regularization))

    def trainer_config(self) -> TrainerConfig:
        return TrainerConfig.from_dict(dict(self.trainer))

    def path(self, value: str) -> str:
        """Absolute form of a local path; URIs (gs://...) unchanged."""
        return value if "://" in value else os.path.abspath(value)

    @property
    def pipeline_root(self) -> str:
        return self.path(os.path.join(self.root, "pipeline"))

    @property
    def metadata_path(self) -> str:
        return self.path(os.path.join(self.root, "metadata.sqlite"))

    @property
    def serving_dir(self) -> str:
        return self.path(self.push_destination or os.path.join(self.root, "serving"))

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
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(
                f"Expected a JSON config file. Received: {str(path)!r} (missing)"
            )
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise ValueError(f"Expected JSON in {str(path)!r}. Received: {err}") from None
        return cls.from_dict(data)


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
