"""Pure folder logic: label map, listing, decoding checks, tf.Example building."""

import json
import os

import pytest
import tensorflow as tf

from backbone_regularizer.components.image_ingestion import images
from tests.image_ingestion.folders import image_bytes, write_file, write_images


def test_label_map_is_sorted_and_independent_of_input_order():
    assert images.make_label_map(["dog", "cat", "bird"]) == {"bird": 0, "cat": 1, "dog": 2}
    assert images.make_label_map(["cat", "dog", "bird"]) == images.make_label_map(
        ["bird", "dog", "cat"]
    )
    assert list(images.make_label_map(["b", "a"])) == ["a", "b"]


@pytest.mark.parametrize(
    "names, message",
    [([], "at least one non-empty class name"), (["cat", ""], "non-empty"), (["a", "a"], "unique")],
)
def test_label_map_errors(names, message):
    with pytest.raises(ValueError, match=message):
        images.make_label_map(names)


def test_label_map_json_is_in_label_order_and_round_trips():
    label_map = images.make_label_map(["zebra", "ant", "émeu"])
    text = images.label_map_to_json(label_map)
    assert text == '{"ant":0,"zebra":1,"émeu":2}'
    assert json.loads(text) == label_map


@pytest.mark.parametrize(
    "name, expected",
    [
        ("a.png", True),
        ("a.JPG", True),
        ("cat/a.jpeg", True),
        ("a.gif", False),
        ("a.png.txt", False),
        ("notes", False),
        ("._a.png", False),
        (".hidden.jpg", False),
    ],
)
def test_is_image_filename(name, expected):
    assert images.is_image_filename(name) is expected


def test_list_image_folder_finds_classes_images_and_skipped_entries(tmp_path):
    root = str(tmp_path / "span-1")
    write_images(root, ["dog/b.jpg", "cat/a.png", "cat/C.PNG"])
    write_file(os.path.join(root, "cat", "notes.txt"), b"x")
    write_file(os.path.join(root, "cat", ".DS_Store"), b"x")
    write_file(os.path.join(root, "README.md"), b"x")
    write_file(os.path.join(root, "dog", "nested", "deep.png"), image_bytes())
    write_file(os.path.join(root, ".ipynb_checkpoints", "x.png"), image_bytes())
    os.makedirs(os.path.join(root, "empty_class"))

    folder = images.list_image_folder(root)

    assert folder.root == root
    assert folder.label_map == {"cat": 0, "dog": 1, "empty_class": 2}
    assert [image.filename for image in folder.images] == ["cat/C.PNG", "cat/a.png", "dog/b.jpg"]
    assert folder.images[2] == images.ImageFile(
        os.path.join(root, "dog", "b.jpg"), "dog/b.jpg", "dog"
    )
    assert folder.skipped == (
        ".ipynb_checkpoints",
        "README.md",
        "cat/.DS_Store",
        "cat/notes.txt",
        "dog/nested",
    )
    assert folder.class_counts() == {"cat": 2, "dog": 1, "empty_class": 0}


def test_list_image_folder_accepts_trailing_slash(tmp_path):
    write_images(str(tmp_path), ["cat/a.png"])
    assert images.list_image_folder(str(tmp_path) + "/").root == str(tmp_path)


def test_list_image_folder_without_class_folders_is_an_error(tmp_path):
    write_images(str(tmp_path), [])
    write_file(str(tmp_path / "a.png"), image_bytes())
    write_file(str(tmp_path / ".hidden" / "b.png"), image_bytes())
    with pytest.raises(ValueError) as error:
        images.list_image_folder(str(tmp_path))
    message = str(error.value)
    assert message.startswith(f"Expected class folders under {str(tmp_path)!r}")
    assert "Received: entries ['.hidden', 'a.png']" in message


def test_list_image_folder_empty_or_missing_folder_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="Received: an empty folder"):
        images.list_image_folder(str(tmp_path))
    missing = str(tmp_path / "missing")
    with pytest.raises(ValueError, match="Expected an image folder .* does not exist"):
        images.list_image_folder(missing)


def test_is_decodable_accepts_png_and_jpeg():
    assert images.is_decodable(image_bytes(1, "PNG"))
    assert images.is_decodable(image_bytes(2, "JPEG"))


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"not an image at all",
        image_bytes(3, "PNG")[:40],  # truncated: header parses, pixels do not
        image_bytes(4, "JPEG")[:200],
        image_bytes(5, "GIF"),  # a real image, but not what a .png/.jpg name promises
    ],
    ids=["empty", "text", "truncated-png", "truncated-jpeg", "gif"],
)
def test_is_decodable_rejects_bad_data(data):
    assert images.is_decodable(data) is False


def test_build_example_features_round_trip_through_tf_parsing():
    data = image_bytes(7)
    example = images.build_example(data, 3, "émeu", "émeu/x.png", span=12)
    features = example.features.feature
    assert set(features) == {"image", "label", "label_name", "filename", "span"}
    assert features[images.SPAN_KEY].int64_list.value == [12]
    assert features[images.IMAGE_KEY].bytes_list.value == [data]
    assert features[images.LABEL_KEY].int64_list.value == [3]

    parsed = tf.io.parse_single_example(
        example.SerializeToString(),
        {
            images.IMAGE_KEY: tf.io.FixedLenFeature([], tf.string),
            images.LABEL_KEY: tf.io.FixedLenFeature([], tf.int64),
            images.LABEL_NAME_KEY: tf.io.FixedLenFeature([], tf.string),
            images.FILENAME_KEY: tf.io.FixedLenFeature([], tf.string),
        },
    )
    assert parsed["label"].numpy() == 3
    assert parsed["label_name"].numpy().decode() == "émeu"
    assert parsed["filename"].numpy().decode() == "émeu/x.png"
    assert tf.io.decode_png(parsed["image"]).shape == (8, 8, 3)
