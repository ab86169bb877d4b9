"""regularize_file(): the written file is what the Trainer sees, verified after reload."""

import json
import zipfile

import keras
import numpy as np
import pytest

from backbone_regularizer.components.regularizer import (
    RegularizationSpec,
    VerificationError,
    regularize_file,
    workflow,
)
from backbone_regularizer.components.regularizer.audit import audit
from tests import zoo
from tests.regularizer.test_attach import scale_model

SPEC = RegularizationSpec(l2=1e-4)


@pytest.mark.parametrize(
    "build",
    [
        zoo.mobilenet_v2,
        zoo.convnext_tiny,
        zoo.nested_backbone_with_head,
        zoo.shared_layer,
        zoo.text_rnn,
        zoo.attention_block,
        zoo.separable_and_transposes,
        zoo.sequential_blocks,
        scale_model,
    ],
)
def test_round_trip_keeps_every_penalty(build, tmp_path):
    src, dst = tmp_path / "src.keras", tmp_path / "out" / "dst.keras"
    build().save(src)
    report = regularize_file(src, dst, SPEC)
    assert report.passed
    assert [c["name"] for c in report.validation["reloaded"]][-1] == "predictions_unchanged"
    saved = json.loads(workflow.report_path_for(dst).read_text())
    assert saved["checksums"]["weights_sha256"] == report.baseline.weights_sha256
    assert saved["counts"]["regularized"] == len(report.regularized)
    assert all("penalty" in w for w in saved["regularized"])
    # These models' configs are their layers' configs: the layer config restored every penalty.
    assert {w["carried_by"] for w in saved["regularized"]} == {"layer config"}
    # A third party loading the file sees the same penalties: no kernel-like weight missed.
    reloaded = keras.saving.load_model(dst, safe_mode=True)
    assert audit(reloaded)["summary"]["missed"] == []
    assert len(reloaded.losses) == report.counts["regularized_trainable"]


def test_weights_without_a_slot_survive_the_round_trip_in_the_plan(tmp_path):
    src, dst = tmp_path / "src.keras", tmp_path / "dst.keras"
    zoo.convnext_tiny().save(src)
    spec = RegularizationSpec(l2=1e-4, extra_kinds=("gamma",), layer_types=("LayerScale",))
    report = regularize_file(src, dst, spec)
    # 18 LayerScale gammas, no regularizer attribute: only the plan carries them.
    assert report.counts["carried_by"] == {"plan": 18}
    reloaded = keras.saving.load_model(dst, safe_mode=True)
    assert len(reloaded.losses) == 18
    assert type(reloaded).__name__ == "Functional"  # the envelope returns the model itself


def test_a_subclassed_model_is_probed_from_its_build_shape_and_keeps_its_penalties(tmp_path):
    src, dst = tmp_path / "src.keras", tmp_path / "dst.keras"
    zoo.subclassed().save(src)
    report = regularize_file(src, dst, RegularizationSpec(l2=1e-4, extra_kinds=("scale",)))
    # Its __init__ rebuilds both Dense layers without regularizers, and `scale` has no slot:
    # the plan carries all three.
    assert report.counts["carried_by"] == {"plan": 3}
    assert report.baseline.probe_batch.shape == (2, 3)
    assert len(keras.saving.load_model(dst).losses) == 3


def test_a_list_of_inputs_gets_a_list_probe_with_ids_inside_the_vocabulary(tmp_path):
    src, dst = tmp_path / "src.keras", tmp_path / "dst.keras"
    zoo.two_inputs().save(src)
    report = regularize_file(src, dst, SPEC)
    ids, features = report.baseline.probe_batch
    assert ids.shape == (2, 8) and ids.dtype == np.int32  # open sequence dimension: 8
    assert 0 <= ids.min() and ids.max() < 7
    assert features.shape == (2, 4) and features.dtype == np.float32
    assert report.counts["regularized"] == 2  # the Embedding and the Dense


def test_identical_inputs_give_identical_checksums(tmp_path):
    zoo.mobilenet_v2().save(tmp_path / "src.keras")
    first = regularize_file(tmp_path / "src.keras", tmp_path / "a.keras", SPEC)
    second = regularize_file(tmp_path / "src.keras", tmp_path / "b.keras", SPEC)
    assert first.baseline.weights_sha256 == second.baseline.weights_sha256
    assert first.regularized == second.regularized


def test_failed_check_writes_nothing(tmp_path, monkeypatch):
    zoo.shared_layer().save(tmp_path / "src.keras")
    calls = []
    real_verify = workflow.verify

    def fail_on_reload(model, report, fingerprint=True):
        calls.append(model)
        if len(calls) >= 2:  # every reload: the plain file and the envelope it falls back to
            raise VerificationError("coverage", "simulated loss of a regularizer on reload")
        return real_verify(model, report, fingerprint)

    monkeypatch.setattr(workflow, "verify", fail_on_reload)
    out = tmp_path / "out"
    with pytest.raises(VerificationError, match="simulated"):
        regularize_file(tmp_path / "src.keras", out / "dst.keras", SPEC)
    # No model, no report, no staging directory, not even the folder the run created.
    assert not out.exists()
    assert len(calls) == 3  # in memory, the plain file, the envelope


def test_missing_file(tmp_path):
    # The staged copy of the weights starts before the load: it must leave nothing behind.
    with pytest.raises(FileNotFoundError, match="missing"):
        regularize_file(tmp_path / "nope.keras", tmp_path / "out" / "o.keras", SPEC)
    assert list(tmp_path.iterdir()) == []


def test_corrupt_keras_file(tmp_path):
    bad = tmp_path / "bad.keras"
    bad.write_bytes(b"not a zip at all")
    with pytest.raises(ValueError, match="not one \\(corrupt or another format\\)"):
        regularize_file(bad, tmp_path / "o.keras", SPEC)
    assert list(tmp_path.iterdir()) == [bad]


def test_truncated_keras_zip(tmp_path):
    zoo.shared_layer().save(tmp_path / "ok.keras")
    broken = tmp_path / "broken.keras"
    with zipfile.ZipFile(tmp_path / "ok.keras") as src, zipfile.ZipFile(broken, "w") as dst:
        dst.writestr("metadata.json", src.read("metadata.json"))  # no config, no weights
    with pytest.raises(ValueError, match="Could not load Keras model"):
        regularize_file(broken, tmp_path / "o.keras", SPEC)


def test_savedmodel_directory(tmp_path):
    saved = tmp_path / "saved_model"
    saved.mkdir()
    (saved / "saved_model.pb").write_bytes(b"")
    with pytest.raises(ValueError, match="TF SavedModel"):
        regularize_file(saved, tmp_path / "o.keras", SPEC)


def test_lambda_layer_refused_in_safe_mode_and_allowed_on_opt_out(tmp_path):
    inputs = keras.Input((4,))
    x = keras.layers.Lambda(lambda t: t * 2.0)(inputs)
    keras.Model(inputs, keras.layers.Dense(2)(x)).save(tmp_path / "lambda.keras")
    with pytest.raises(ValueError, match="Lambda layer"):
        regularize_file(tmp_path / "lambda.keras", tmp_path / "o.keras", SPEC)
    # The explicit opt-out works and is recorded; nothing is written without it.
    assert not (tmp_path / "o.keras").exists()
    report = regularize_file(tmp_path / "lambda.keras", tmp_path / "o.keras", SPEC, safe_mode=False)
    assert report.validation["source_loaded_with_safe_mode"] is False
    saved = json.loads(workflow.report_path_for(tmp_path / "o.keras").read_text())
    assert saved["validation"]["source_loaded_with_safe_mode"] is False


def test_unregistered_custom_layer(tmp_path):
    class Unregistered(keras.layers.Layer):
        def call(self, x):
            return x

    inputs = keras.Input((4,))
    keras.Model(inputs, keras.layers.Dense(2)(Unregistered()(inputs))).save(tmp_path / "c.keras")
    with pytest.raises(ValueError, match="Could not load Keras model"):
        regularize_file(tmp_path / "c.keras", tmp_path / "o.keras", SPEC)


def test_destination_must_be_keras(tmp_path):
    zoo.shared_layer().save(tmp_path / "src.keras")
    with pytest.raises(ValueError, match="ending in .keras"):
        regularize_file(tmp_path / "src.keras", tmp_path / "out.h5", SPEC)
