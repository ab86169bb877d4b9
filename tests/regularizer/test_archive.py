"""The written file: the source's weights copied byte for byte, the config model.save writes;
the weights checksum: the documented digest, for every dtype."""

import hashlib
import io
import json
import zipfile

import h5py
import keras
import numpy as np
import pytest

from backbone_regularizer.components.regularizer import (
    RegularizationSpec,
    regularize,
    regularize_file,
)
from backbone_regularizer.components.regularizer.archive import RegularizedArchive, copyable_members
from backbone_regularizer.components.regularizer.file_format import save_regularized
from backbone_regularizer.components.regularizer.keras_file import (
    load_keras_model,
    weight_paths,
    weights_sha256,
)
from tests import zoo

SPEC = RegularizationSpec(l2=1e-4)
WEIGHTS = "model.weights.h5"


def _reference_sha256(model: keras.Model) -> str:
    """The digest as documented: path, dtype, shape, raw bytes of every variable, walk order."""
    digest = hashlib.sha256()
    for path, variable in weight_paths(model):
        value = np.ascontiguousarray(keras.ops.convert_to_numpy(variable.value))
        digest.update(f"{path}|{value.dtype.str}|{value.shape}\n".encode())
        digest.update(value.tobytes())
    return digest.hexdigest()


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    path = tmp_path_factory.mktemp("archive") / "src.keras"
    zoo.mobilenet_v2().save(path)
    return path


def test_digest_is_the_documented_one_for_every_dtype():
    inputs = keras.Input((4,))
    x = keras.layers.Dense(3, name="f32")(inputs)
    x = keras.layers.Dense(3, name="bf16", dtype="bfloat16")(x)  # no buffer format of its own
    model = keras.Model(inputs, keras.layers.Dense(2, name="f16", dtype="float16")(x))
    assert {str(v.dtype) for v in model.weights} == {"float32", "bfloat16", "float16"}
    assert weights_sha256(model) == _reference_sha256(model)


@pytest.mark.parametrize(
    "spec, config_class",
    [(SPEC, "Functional"), (RegularizationSpec(l2_sp=0.01), "RegularizedModel")],
    ids=["plain-keras", "envelope"],
)
def test_written_file_holds_the_source_weights_byte_for_byte(source, tmp_path, spec, config_class):
    dst = tmp_path / "dst.keras"
    report = regularize_file(source, dst, spec)
    with zipfile.ZipFile(source) as src, zipfile.ZipFile(dst) as out:
        assert out.read(WEIGHTS) == src.read(WEIGHTS)
        assert sorted(out.namelist()) == sorted(src.namelist())
        assert json.loads(out.read("config.json"))["class_name"] == config_class
    assert report.validation["reloaded"][3]["sha256"] == report.baseline.weights_sha256


def test_config_and_metadata_are_what_save_regularized_writes(source, tmp_path):
    model = load_keras_model(source)
    regularize(model, SPEC)
    copied, saved = tmp_path / "copied.keras", tmp_path / "saved.keras"
    with RegularizedArchive(source, copied) as archive:
        archive.finish(model)
    assert archive.copied_weights
    save_regularized(model, saved)
    with zipfile.ZipFile(copied) as a, zipfile.ZipFile(saved) as b:
        assert json.loads(a.read("config.json")) == json.loads(b.read("config.json"))
        assert (
            json.loads(a.read("metadata.json")).keys() == json.loads(b.read("metadata.json")).keys()
        )
    reloaded = keras.saving.load_model(copied)
    assert weights_sha256(reloaded) == weights_sha256(model)
    assert len(reloaded.losses) == len(model.losses)


def test_a_compiled_source_is_saved_whole_without_its_optimizer_state(tmp_path):
    model = zoo.shared_layer()
    model.compile(optimizer="adam", loss="mse")
    model.fit(np.zeros((4, 8)), np.zeros((4, 2)), epochs=1, verbose=0)
    src, dst = tmp_path / "compiled.keras", tmp_path / "dst.keras"
    model.save(src)
    with zipfile.ZipFile(src) as archive:
        assert copyable_members(archive) is None
        assert "optimizer" in h5py.File(io.BytesIO(archive.read(WEIGHTS)), "r")
    assert regularize_file(src, dst, SPEC).passed
    with zipfile.ZipFile(dst) as archive:
        assert "optimizer" not in h5py.File(io.BytesIO(archive.read(WEIGHTS)), "r")


def test_an_archive_with_unknown_members_is_not_copied(source, tmp_path):
    odd = tmp_path / "odd.keras"
    with zipfile.ZipFile(source) as src, zipfile.ZipFile(odd, "w") as out:
        for info in src.infolist():
            out.writestr(info, src.read(info))
        out.writestr("notes.txt", "not written by Keras")
    with zipfile.ZipFile(odd) as archive:
        assert copyable_members(archive) is None
    with zipfile.ZipFile(source) as archive:
        assert [i.filename for i in copyable_members(archive)] == [WEIGHTS]
