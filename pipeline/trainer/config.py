"""Fine-tuning settings passed to the Trainer as ``custom_config`` (plain JSON values)."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from backbone_regularizer.components.regularizer.custom_modules import check_module_names
from backbone_regularizer.pipeline.trainer.data import CACHE
from backbone_regularizer.pipeline.trainer.head import POOLING
from backbone_regularizer.pipeline.trainer.preprocessing import check_preprocessing

# keras.applications module whose `preprocess_input` matches each architecture family.
PREPROCESSING = {
    "MobileNet": "mobilenet",
    "MobileNetV2": "mobilenet_v2",
    "MobileNetV3Small": "mobilenet_v3",
    "MobileNetV3Large": "mobilenet_v3",
    "ResNet50": "resnet50",
    "ResNet101": "resnet",
    "ResNet152": "resnet",
    "ResNet50V2": "resnet_v2",
    "ResNet101V2": "resnet_v2",
    "ResNet152V2": "resnet_v2",
    "DenseNet121": "densenet",
    "Xception": "xception",
    "InceptionV3": "inception_v3",
    "VGG16": "vgg16",
    "VGG19": "vgg19",
    "EfficientNetB0": "efficientnet",
    "EfficientNetV2B0": "efficientnet_v2",
    "ConvNeXtTiny": "convnext",
}
_CHOICES = {
    "head_init": ("probe", "random"),
    "mixed_precision": ("auto", "on", "off"),
    "distribution": ("auto", "mirrored", "multi_worker", "none"),
    "cache": CACHE,
}


@dataclasses.dataclass(frozen=True)
class TrainerConfig:
    """Everything ``run_fn`` needs besides the data and the base model.

    Args:
        num_classes: number of target classes (labels are 0..num_classes-1); null takes the
            size of ``labels``. The pipeline's Trainer fills both from the Examples' label
            vocabulary (``backbone_regularizer.pipeline.trainer.executor``).
        labels: the class names in index order, exported with the model (its serving
            signature returns them, ``label_map.json`` lies beside it); null names the
            classes by their index ("0", "1", ...).
        architecture: backbone class name; selects ``preprocess_input`` (see PREPROCESSING)
            unless ``preprocessing`` is given, when it is only a label (e.g.
            "ResNetBackbone" for a KerasHub backbone).
        image_size: (height, width) the images are resized to: the backbone's input.
        learning_rate: Adam learning rate for fine-tuning (small: the backbone is pre-trained).
        epochs: maximum epochs after warm-up; early stopping on the validation
            cross-entropy may stop sooner.
        head_init: "probe" starts the head as the linear probe (a logistic regression fitted
            on the frozen backbone's pooled features of the training split: head-only warm-up
            in closed form); "random" starts it from Glorot initialization.
        warmup_epochs: head-only epochs (backbone frozen) before unfreezing.
        warmup_learning_rate: Adam learning rate of those epochs (None: ``learning_rate``).
        unfreeze_from: after warm-up, train backbone layers from this layer on (None: all
            layers the regularizer left trainable).
        batch_size, dropout, patience: as named.
        weight_decay: decoupled weight decay (AdamW-style) on kernels; warned about when the
            same weights also carry an L2 penalty.
        head_beta: L2 on the new head's kernel, ``head_beta / 2 * sum(w**2)``: the head side
            of L2-SP (its ``beta``; the backbone side is the regularizer's ``l2_sp``).
        jit_compile: XLA-compile the train step. Off by default: Keras' "auto" turns it on,
            and on CPU it made a fine-tuning epoch of the demo ~4x slower and its first
            epoch ~2x slower (measured on 2 cores).
        baselines: also fit the pixel logistic regression and the linear probe on the same
            split and write their accuracies into the summary (needed by head_init="probe").
        baseline_max_examples: the baselines and the probe-initialized head use a
            stratified sample of at most this many examples per split
            (``baseline_max_examples // num_classes`` per class, drawn in one streaming
            pass; see ``backbone_regularizer.pipeline.trainer.sample``): their time and
            memory do not grow with the data. At least ``num_classes``.
        baseline_image_size: [height, width] the pixel baseline resizes the images to.
        augment: light augmentation, per image: random translation by up to 1/8 of the size
            (black fill) and brightness (+-0.1 after preprocessing).
        cache: "none" (default: images are decoded every epoch, memory does not grow with
            the data), "memory" (decoded images kept in RAM: count x h x w x 3 x 4 bytes,
            logged; refused when larger than the machine's memory) or "disk" (written under
            ``model_run_dir`` and removed after training).
        shuffle_buffer: encoded records in the shuffle buffer (memory: this many times the
            average encoded image, ~20-30 KB for a 224x224 JPEG).
        mixed_precision: "auto" (on when a GPU is present), "on" or "off".
        distribution: "auto" (MirroredStrategy when more than one GPU), "mirrored" (every
            GPU of this machine, else every logical CPU device), "multi_worker"
            (MultiWorkerMirroredStrategy over the cluster in ``TF_CONFIG``; the chief
            exports) or "none". ``batch_size`` is the global batch, split across replicas.
            See ``backbone_regularizer.pipeline.trainer.distribution``.
        seed: seeds shuffling, augmentation and the head's initialisation.
        preprocessing: null (``architecture``'s keras.applications ``preprocess_input``), a
            mode ("none", "unit", "symmetric", "imagenet") or ``{"scale": s, "offset": o}``
            applied to RGB in [0, 255] (see
            ``backbone_regularizer.pipeline.trainer.preprocessing``); required for
            backbones that are not keras.applications ones (KerasHub).
        pooling: how the head reduces the backbone's output: "avg" (global average over a
            feature map, mean over a token sequence), "max", or "class_token" (first token of
            a sequence). See ``backbone_regularizer.pipeline.trainer.head``.
        backbone_output: for a backbone with several outputs (dict or list), the key or index
            the head uses; null chooses by rank (see
            ``backbone_regularizer.pipeline.trainer.head``).
        custom_modules: modules imported before the base model is loaded (they register its
            custom classes); ``keras_hub`` is imported automatically when needed.
    """

    num_classes: int | None = None
    labels: tuple[str, ...] | None = None
    architecture: str = "MobileNetV2"
    image_size: tuple[int, int] = (32, 32)
    learning_rate: float = 1e-3
    epochs: int = 30
    head_init: str = "probe"
    warmup_epochs: int = 0
    warmup_learning_rate: float | None = None
    unfreeze_from: str | None = None
    batch_size: int = 32
    dropout: float = 0.2
    patience: int = 5
    weight_decay: float = 0.0
    head_beta: float = 0.0
    baselines: bool = True
    jit_compile: bool = False
    baseline_max_examples: int = 2000
    baseline_image_size: tuple[int, int] = (32, 32)
    augment: bool = True
    cache: str = "none"
    shuffle_buffer: int = 1024
    mixed_precision: str = "auto"
    distribution: str = "auto"
    seed: int = 0
    preprocessing: str | dict | None = None
    pooling: str = "avg"
    backbone_output: str | int | None = None
    custom_modules: tuple[str, ...] = ()

    def __post_init__(self):
        def fail(name, expected):
            raise ValueError(
                f"Invalid trainer setting `{name}`. Expected {expected}. "
                f"Received: {name}={getattr(self, name)!r}"
            )

        if self.labels is not None:
            names = self.labels
            if (
                not isinstance(names, (list, tuple))
                or len(names) < 2
                or not all(isinstance(n, str) and n for n in names)
                or len(set(names)) != len(names)
            ):
                fail("labels", "a list of at least two unique, non-empty class names, or null")
            object.__setattr__(self, "labels", tuple(names))
            if self.num_classes is None:
                object.__setattr__(self, "num_classes", len(names))
        for name in ("epochs", "batch_size", "patience", "shuffle_buffer"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                fail(name, "an int >= 1")
        classes = self.num_classes
        if classes is not None and (
            isinstance(classes, bool) or not isinstance(classes, int) or classes < 2
        ):
            fail("num_classes", "an int >= 2, or null (the size of `labels`)")
        if self.labels is not None and classes != len(self.labels):
            fail("num_classes", f"{len(self.labels)}, the number of `labels` {list(self.labels)}")
        for name in ("warmup_epochs", "seed"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                fail(name, "an int >= 0")
        for name in ("learning_rate", "weight_decay", "dropout", "head_beta"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                fail(name, "a number")
            if not math.isfinite(value) or value < 0:
                fail(name, "a finite number >= 0")
        if self.learning_rate == 0:
            fail("learning_rate", "a number > 0")
        rate = self.warmup_learning_rate
        if rate is not None and (
            isinstance(rate, bool)
            or not isinstance(rate, (int, float))
            or not math.isfinite(rate)
            or rate <= 0
        ):
            fail("warmup_learning_rate", "a finite number > 0 or null")
        if self.dropout >= 1:
            fail("dropout", "a number in [0, 1)")
        if not isinstance(self.architecture, str):
            fail("architecture", "a string")
        if self.preprocessing is None and self.architecture not in PREPROCESSING:
            fail(
                "architecture",
                f"one of {sorted(PREPROCESSING)}, or any name with an explicit `preprocessing`",
            )
        if self.preprocessing is not None:
            check_preprocessing(self.preprocessing)
        if self.pooling not in POOLING:
            fail("pooling", f"one of {list(POOLING)}")
        output = self.backbone_output
        if output is not None and (isinstance(output, bool) or not isinstance(output, (str, int))):
            fail("backbone_output", "a key (string), an index (int) or null")
        object.__setattr__(self, "custom_modules", check_module_names(self.custom_modules))
        for name in ("image_size", "baseline_image_size"):
            size = getattr(self, name)
            if (
                not isinstance(size, (list, tuple))
                or len(size) != 2
                or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in size)
            ):
                fail(name, "[height, width] of positive ints")
            object.__setattr__(self, name, tuple(size))
        cap = self.baseline_max_examples
        # Without num_classes yet (the Trainer passes the Examples' labels at run time), at
        # least 2 here; the run's own config checks the real number.
        least = self.num_classes or 2
        if isinstance(cap, bool) or not isinstance(cap, int) or cap < least:
            fail("baseline_max_examples", f"an int >= num_classes ({least})")
        for name, choices in _CHOICES.items():
            if getattr(self, name) not in choices:
                fail(name, f"one of {list(choices)}")
        for name in ("augment", "baselines", "jit_compile"):
            if not isinstance(getattr(self, name), bool):
                fail(name, "a bool")
        if self.head_init == "probe" and not self.baselines:
            fail("head_init", '"random" when baselines is false (the probe is a baseline)')
        if self.unfreeze_from is not None and not isinstance(self.unfreeze_from, str):
            fail("unfreeze_from", "a layer name or null")

    @property
    def preprocessing_module(self) -> str | dict:
        """A keras.applications module name, or the explicit ``{"scale", "offset"}``."""
        if self.preprocessing is None:
            return PREPROCESSING[self.architecture]
        return check_preprocessing(self.preprocessing)

    def class_names(self) -> list[str]:
        """The class names in index order: ``labels``, or the indices as strings.

        Raises:
            ValueError: neither ``num_classes`` nor ``labels`` is set.
        """
        if self.labels is not None:
            return list(self.labels)
        if self.num_classes is None:
            raise ValueError(
                "Invalid trainer setting `num_classes`. Expected an int >= 2 or `labels` (the "
                "pipeline's Trainer sets them from the Examples' label vocabulary). "
                "Received: num_classes=None, labels=None"
            )
        return [str(index) for index in range(self.num_classes)]

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["image_size"] = list(self.image_size)
        data["baseline_image_size"] = list(self.baseline_image_size)
        data["custom_modules"] = list(self.custom_modules)
        data["labels"] = None if self.labels is None else list(self.labels)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainerConfig:
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - fields)
        if unknown:
            raise ValueError(
                f"Unknown trainer settings: {unknown}. Expected keys among {sorted(fields)}."
            )
        return cls(**data)
