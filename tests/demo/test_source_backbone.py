"""The demo's committed source backbone, the script that regenerates it, and its installation."""

import hashlib
import json

import keras
import numpy as np

from backbone_regularizer.pipeline.demo import data as demo_data
from backbone_regularizer.pipeline.demo import source_backbone


def test_committed_backbone_is_the_truncated_mobilenetv2_it_claims():
    model = keras.saving.load_model(source_backbone.SHIPPED, compile=False, safe_mode=True)
    info = source_backbone.shipped_info()
    assert model.layers[-1].name == source_backbone.CUT_LAYER == info["cut_layer"]
    assert list(model.output.shape[1:]) == info["output_shape"] == [4, 4, 96]
    assert info["epochs"] == source_backbone.EPOCHS and info["seed"] == source_backbone.SEED
    # Layer names are MobileNetV2's: the regularizer sees a real keras.applications family.
    reference = keras.applications.MobileNetV2(
        weights=None, include_top=False, input_shape=(32, 32, 3), alpha=source_backbone.ALPHA
    )
    # The Input's auto name depends on how many models this process built before (input_layer_N).
    names = [layer.name for layer in model.layers[1:]]
    assert names == [layer.name for layer in reference.layers[1:]][: len(names)]
    assert isinstance(model.layers[0], keras.layers.InputLayer)
    assert source_backbone.SHIPPED.stat().st_size < 2_000_000


def test_cache_key_follows_the_committed_file():
    settings = source_backbone.settings()
    digest = hashlib.sha256(source_backbone.SHIPPED.read_bytes()).hexdigest()
    assert settings["file_sha256"] == digest
    assert settings["cut_layer"] == source_backbone.CUT_LAYER


def test_regeneration_script_runs_on_a_reduced_config(tmp_path):
    out = tmp_path / "backbone.keras"
    info = source_backbone.main(["--out", str(out), "--epochs", "1", "--limit", "40"])
    assert json.loads(out.with_suffix(".json").read_text()) == info
    assert info["output_shape"] == [4, 4, 96] and info["source_train_images"] == 144
    model = keras.saving.load_model(out, compile=False)
    features = model.predict(np.zeros((2, 32, 32, 3), "float32"), verbose=0)
    assert features.shape == (2, 4, 4, 96) and np.isfinite(features).all()


def test_demo_data_installs_the_committed_backbone(tmp_path):
    info = demo_data.ensure_demo_data(tmp_path, per_class=2)
    installed = demo_data.backbone_model_path(tmp_path)
    assert installed.read_bytes() == source_backbone.SHIPPED.read_bytes()
    assert info["pretraining"] == source_backbone.shipped_info()
    assert len(list((tmp_path / "images" / "span-1").glob("digit_*/*.png"))) == 10
    # A second call with nothing changed reuses what is there.
    assert demo_data.ensure_demo_data(tmp_path, per_class=2) == info
