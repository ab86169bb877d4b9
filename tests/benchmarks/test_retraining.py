"""The retraining benchmark's code on a tiny budget: one seed, 2 spans (the second without
digit_5), one epoch (not its results): the window logic it shares with ImageExampleGen, the
shared trainings, the outputs."""

import json

import numpy as np
import pytest

from backbone_regularizer.pipeline.demo import data as demo_data
from benchmarks import retraining


def test_smoke_two_spans_writes_table_plot_and_json(untrained_backbone, tmp_path):
    result = retraining.main(
        [
            "--seeds", "1", "--spans", "2", "--missing-span", "2", "--per-class", "4",
            "--epochs", "1", "--out", str(tmp_path), "--backbone", str(untrained_backbone),
        ]
    )  # fmt: skip
    rows = result["rows"]
    assert [(r["span"], r["strategy"], r["spans"]) for r in rows] == [
        (1, "newest span", [1]),
        (1, "window of 3", [1]),
        (1, "all spans", [1]),
        (2, "newest span", [2]),
        (2, "window of 3", [1, 2]),
        (2, "all spans", [1, 2]),
    ]
    # Windows holding the same spans share one training (3 trainings for 6 rows).
    assert len({(r["seed"], tuple(r["spans"])) for r in rows}) == 3
    assert rows[4] == {**rows[5], "strategy": "window of 3"}
    # Span 2 has no digit_5: trained on it alone, the model never predicts digit_5.
    assert rows[3]["train_examples"] < rows[4]["train_examples"]
    assert rows[3]["missing_class"] == 0.0
    assert all(0 <= r[m] <= 1 for r in rows for m in retraining.METRICS)
    text = (tmp_path / "retraining.md").read_text()
    assert "| 2 (10 deg) no digit_5 |" in text
    assert (tmp_path / "retraining.png").read_bytes()[:4] == b"\x89PNG"
    assert json.loads((tmp_path / "retraining.json").read_text())["summary"]


def test_the_holdout_is_fixed_and_disjoint_from_every_span():
    _, labels = demo_data._digits()
    holdout_a, spans_a = retraining.assign(labels, 30, seed=0)
    holdout_b, spans_b = retraining.assign(labels, 30, seed=1)
    assert holdout_a == holdout_b and spans_a != spans_b
    for digit, held in holdout_a.items():
        drawn = [i for span in spans_a.values() for i in span[digit]]
        assert len(drawn) == len(set(drawn)) == 5 * 30
        assert not set(drawn) & set(held) and len(held) == retraining.HOLDOUT_PER_CLASS
        assert set(labels[drawn].tolist()) == {digit}
    with pytest.raises(ValueError, match="lower --per-class"):
        retraining.assign(labels, 40, seed=0)


def test_rotation_is_the_drift():
    images, _ = demo_data._digits()
    assert retraining.rotation(1) == 0 and retraining.rotation(3) == 2 * retraining.ROTATION_STEP
    assert retraining.png(images[0], 0) != retraining.png(images[0], 30)
    import io

    from PIL import Image

    decoded = np.asarray(Image.open(io.BytesIO(retraining.png(images[0], 10))))
    assert decoded.shape == (32, 32, 3)
