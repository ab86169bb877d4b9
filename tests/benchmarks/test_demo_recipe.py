"""The demo-recipe benchmark's code on a tiny budget: two seeds, one epoch (not its results)."""

import json

import pytest

from backbone_regularizer.pipeline.demo import source_backbone
from benchmarks import demo_recipe, transfer_study


def test_two_seeds_on_a_split_read_from_an_examples_artifact(tmp_path):
    encoded, labels = transfer_study.target_pool()
    eval_idx, train_idx = transfer_study.draw(labels, 2, seed=0)
    run = tmp_path / "root" / "pipeline" / "ImageExampleGen" / "examples" / "7"
    for split, indices in (("train", train_idx), ("eval", eval_idx[::5])):
        (run / f"Split-{split}").mkdir(parents=True)
        transfer_study.write_records(run / f"Split-{split}" / "data.gz", encoded, labels, indices)
    (tmp_path / "root" / "pipeline" / "ImageExampleGen" / "examples" / "3").mkdir()  # older run
    assert demo_recipe.latest_split(tmp_path / "root")[0] == str(run / "Split-train" / "*.gz")

    result = demo_recipe.main(
        [
            "--root", str(tmp_path / "root"), "--backbone", str(source_backbone.SHIPPED),
            "--seeds", "2", "--epochs", "1", "--out", str(tmp_path / "out"),
        ]
    )  # fmt: skip
    rows = result["rows"]
    assert [r["seed"] for r in rows] == [0, 1]
    assert all(r["train_examples"] == 10 and r["eval_examples"] == 30 for r in rows)
    assert all(r["blessed"] == (r["fine_tuned"] >= result["min_accuracy"]) for r in rows)
    # The baselines do not depend on the seed: same split, deterministic logistic regressions.
    assert rows[0]["pixels"] == rows[1]["pixels"] and rows[0]["probe"] == rows[1]["probe"]
    text = (tmp_path / "out" / "demo_recipe.md").read_text()
    assert "| 1 |" in text and "blessed (accuracy >= min_accuracy" in text
    assert json.loads((tmp_path / "out" / "demo_recipe.json").read_text())["rows"] == rows


def test_missing_demo_run_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="run `make run` first"):
        demo_recipe.latest_split(tmp_path)
