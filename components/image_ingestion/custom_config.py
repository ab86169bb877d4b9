"""ImageExampleGen's own settings, carried in ExampleGen's ``custom_config`` parameter.

``FileBasedExampleGen`` has a ``custom_config`` parameter for executor settings (an
``example_gen_pb2.CustomConfig`` holding a ``google.protobuf.Any``); TFX's BigQuery ExampleGen
packs its own proto there. ImageExampleGen packs a ``google.protobuf.Struct``, so its settings
compile to Kubeflow as JSON like every other parameter, and a changed setting changes the
step's cache key.

>>> config = make_custom_config({SHARDS_PER_SPLIT_KEY: 8})
>>> read_custom_config(proto_utils.proto_to_json(config))
{'shards_per_split': 8}
"""

from __future__ import annotations

from google.protobuf import struct_pb2
from tfx.proto import example_gen_pb2
from tfx.utils import proto_utils

SHARDS_PER_SPLIT_KEY = "shards_per_split"
# Settings that are ints (a Struct stores every number as a double).
_INT_KEYS = (SHARDS_PER_SPLIT_KEY,)


def make_custom_config(settings: dict) -> example_gen_pb2.CustomConfig | None:
    """Packs ``settings`` (JSON-like values; ``None`` values left out) into a CustomConfig.

    Returns:
        ``None`` when no setting is left, so a pipeline without settings keeps TFX's default
        (no ``custom_config``) and its cache key.
    """
    given = {key: value for key, value in settings.items() if value is not None}
    if not given:
        return None
    struct = struct_pb2.Struct()
    struct.update(given)
    config = example_gen_pb2.CustomConfig()
    config.custom_config.Pack(struct)
    return config


def read_custom_config(custom_config_json: str | None) -> dict:
    """The settings ``make_custom_config`` packed, from the exec property's JSON.

    Raises:
        ValueError: the property holds another message than a ``Struct``.
    """
    if not custom_config_json:
        return {}
    config = example_gen_pb2.CustomConfig()
    proto_utils.json_to_proto(custom_config_json, config)
    if not config.HasField("custom_config"):
        return {}
    struct = struct_pb2.Struct()
    if not config.custom_config.Unpack(struct):
        raise ValueError(
            "Expected ImageExampleGen's `custom_config` to hold a google.protobuf.Struct. "
            f"Received: custom_config={custom_config_json}"
        )
    settings = dict(struct)
    for key in _INT_KEYS:
        if isinstance(settings.get(key), float) and settings[key].is_integer():
            settings[key] = int(settings[key])
    return settings
