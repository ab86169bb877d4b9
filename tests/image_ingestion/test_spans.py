"""Span patterns: input configs, validation, and TFX's driver picking the latest span."""

import os

import pytest
from tfx.components.example_gen import driver
from tfx.proto import example_gen_pb2
from tfx.utils import proto_utils

from backbone_regularizer.components.image_ingestion import spans
from tests.image_ingestion.folders import write_images


def test_input_config_without_spans_reads_class_folders_under_input_base():
    config = spans.make_input_config(None)
    assert [(s.name, s.pattern) for s in config.splits] == [("single_split", "*/*")]


@pytest.mark.parametrize(
    "span_pattern, pattern",
    [
        ("span-{SPAN}", "span-{SPAN}/*/*"),
        ("span-{SPAN}/", "span-{SPAN}/*/*"),
        ("pets/{SPAN:3}", "pets/{SPAN:3}/*/*"),
        ("span-{SPAN}/v{VERSION}", "span-{SPAN}/v{VERSION}/*/*"),
        ("{YYYY}-{MM}-{DD}", "{YYYY}-{MM}-{DD}/*/*"),
    ],
)
def test_input_config_appends_class_file_glob(span_pattern, pattern):
    assert spans.make_input_config(span_pattern).splits[0].pattern == pattern


@pytest.mark.parametrize(
    "span_pattern, message",
    [
        ("", "non-empty folder pattern"),
        ("/", "non-empty folder pattern"),
        (3, "non-empty folder pattern"),
        ("/data/span-{SPAN}", "relative to `input_base`"),
        ("gs://bucket/span-{SPAN}", "relative to `input_base`"),
        ("span-*", "without glob characters"),
        ("span-1", "to contain {SPAN}"),
        ("{SPAN}-{SPAN}", "TFX span spec rules"),
        ("{SPAN}-{YYYY}{MM}{DD}", "TFX span spec rules"),
        ("v{VERSION}", "TFX span spec rules"),
    ],
)
def test_invalid_span_patterns(span_pattern, message):
    with pytest.raises(ValueError, match="^Expected `span_pattern`") as error:
        spans.validate_span_pattern(span_pattern)
    assert message in str(error.value)
    assert f"Received: span_pattern={span_pattern!r}" in str(error.value)


def test_span_folder_from_resolved_pattern():
    assert spans.span_folder("/data", "span-3/*/*") == os.path.join("/data", "span-3")
    assert spans.span_folder("gs://b/pets", "a/003/*/*") == "gs://b/pets/a/003"
    assert spans.span_folder("/data", "*/*") == "/data"


@pytest.mark.parametrize(
    "pattern, message",
    [
        ("span-3/*", "ending in '/*/*'"),
        ("span-{SPAN}/*/*", "FileBasedDriver fills in {SPAN}"),
        ("{YYYY}{MM}{DD}/*/*", "span-resolved"),
    ],
)
def test_span_folder_rejects_patterns_not_built_or_not_resolved(pattern, message):
    with pytest.raises(ValueError, match="^Expected") as error:
        spans.span_folder("/data", pattern)
    assert message in str(error.value)
    assert f"Received: pattern={pattern!r}" in str(error.value)


def resolve(input_base, span_pattern):
    exec_properties = {
        "input_base": input_base,
        "input_config": proto_utils.proto_to_json(spans.make_input_config(span_pattern)),
    }
    return driver.FileBasedDriver(None).resolve_exec_properties(exec_properties, None, None)


def test_tfx_driver_picks_the_latest_span_numerically(tmp_path):
    base = str(tmp_path)
    write_images(os.path.join(base, "span-9"), ["cat/a.png"])
    write_images(os.path.join(base, "span-10"), ["cat/a.png", "dog/b.png"])
    resolved = resolve(base, "span-{SPAN}")
    config = proto_utils.json_to_proto(resolved["input_config"], example_gen_pb2.Input())
    assert resolved["span"] == 10
    assert config.splits[0].pattern == "span-10/*/*"
    assert spans.span_folder(base, config.splits[0].pattern) == os.path.join(base, "span-10")
    # The fingerprint covers the image files of the chosen span, not just its folder.
    assert "num_files:2" in resolved["input_fingerprint"]


def test_tfx_driver_ignores_a_span_folder_without_class_files(tmp_path):
    base = str(tmp_path)
    write_images(os.path.join(base, "span-1"), ["cat/a.png"])
    os.makedirs(os.path.join(base, "span-2", "cat"))  # still being uploaded
    assert resolve(base, "span-{SPAN}")["span"] == 1


def test_span_folders_are_listed_as_the_driver_counts_them(tmp_path):
    base = str(tmp_path)
    write_images(os.path.join(base, "span-2"), ["cat/a.png"])
    write_images(os.path.join(base, "span-10"), ["cat/a.png"])
    write_images(os.path.join(base, "span-7"), ["dog/a.png"])
    os.makedirs(os.path.join(base, "span-11", "cat"))  # no file yet: not a span
    folders = spans.list_span_folders(base, "span-{SPAN}")
    assert [(f.span, f.path) for f in folders] == [
        (n, os.path.join(base, f"span-{n}")) for n in (2, 7, 10)
    ]
    assert folders[-1].span == resolve(base, "span-{SPAN}")["span"]


def test_versioned_and_dated_span_folders(tmp_path):
    base = str(tmp_path)
    for folder in ("s-1/v1", "s-1/v3", "s-2/v2"):
        write_images(os.path.join(base, folder), ["cat/a.png"])
    folders = spans.list_span_folders(base, "s-{SPAN}/v{VERSION}")
    assert [(f.span, os.path.basename(f.path)) for f in folders] == [(1, "v3"), (2, "v2")]
    for day in ("2026-01-30", "2026-02-01"):
        write_images(os.path.join(base, "days", day), ["cat/a.png"])
    dated = spans.list_span_folders(os.path.join(base, "days"), "{YYYY}-{MM}-{DD}")
    assert [f.span for f in dated] == [20483, 20485]  # days since 1970-01-01


@pytest.mark.parametrize(
    "window, newest, expected",
    [(1, 7, [7]), (2, 7, [2, 7]), (3, 10, [2, 7, 10]), (5, 7, [2, 7]), ("all", 10, [2, 7, 10])],
)
def test_window_counts_existing_spans_up_to_the_resolved_one(window, newest, expected):
    folders = [spans.SpanFolder(n, f"/d/span-{n}") for n in (2, 7, 10)]
    selected = spans.select_window(folders, f"/d/span-{newest}/", window)
    assert [f.span for f in selected] == expected


def test_window_refuses_a_resolved_span_it_cannot_find():
    with pytest.raises(ValueError, match="^Expected the span folder the driver resolved"):
        spans.select_window([spans.SpanFolder(1, "/d/span-1")], "/d/span-2", 1)


@pytest.mark.parametrize("window", [0, -1, True, 1.5, "last", None])
def test_invalid_span_window(window):
    with pytest.raises(ValueError, match=r"^Invalid config `span_window`. Expected an int >= 1"):
        spans.check_span_window(window)
