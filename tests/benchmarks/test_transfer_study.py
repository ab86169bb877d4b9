"""The transfer study's code on a tiny budget: one seed, the arms, one epoch (not its results)."""

import json
import math

import pytest

from benchmarks import transfer_study


def test_smoke_one_seed_two_arms_writes_table_plot_and_json(untrained_backbone, tmp_path):
    result = transfer_study.main(
        [
            "--seeds", "1", "--sizes", "2", "--arms", "none", "l2_sp", "--epochs", "1",
            "--out", str(tmp_path), "--backbone", str(untrained_backbone),
        ]
    )  # fmt: skip
    rows = result["rows"]
    assert [r["arm"] for r in rows] == ["none", "l2_sp"]
    assert rows[0]["penalty_terms"] == 0 and rows[1]["penalty_terms"] > 0
    assert all(r["train_examples"] == 10 and r["eval_examples"] == 150 for r in rows)
    assert all(0 <= r["probe"] <= 1 and 0 <= r["pixels"] <= 1 for r in rows)
    assert "| 2 | l2_sp |" in (tmp_path / "transfer_study.md").read_text()
    assert (tmp_path / "transfer_study.png").read_bytes()[:4] == b"\x89PNG"
    assert json.loads((tmp_path / "transfer_study.json").read_text())["summary"]
    # Results of separate processes merge into one summary without training again.
    merged = transfer_study.main(
        ["--merge", str(tmp_path / "transfer_study.json"), "--out", str(tmp_path / "merged")]
    )
    assert merged["rows"] == rows and (tmp_path / "merged" / "transfer_study.png").exists()


def test_draws_keep_evaluation_fixed_and_disjoint():
    _, labels = transfer_study.target_pool()
    eval_a, train_a = transfer_study.draw(labels, 5, seed=0)
    eval_b, train_b = transfer_study.draw(labels, 5, seed=1)
    assert list(eval_a) == list(eval_b) and len(eval_a) == 150
    assert not set(train_a) & set(eval_a) and set(train_a) != set(train_b)
    assert sorted(set(labels[train_a].tolist())) == [0, 1, 2, 3, 4] and len(train_a) == 25


def test_summary_pairs_seeds_and_gives_intervals():
    rows = [
        {"arm": arm, "seed": seed, "per_class": 5, "pixels": 0.9, "probe": 0.8,
         "final_val_accuracy": base + shift, "best_val_accuracy": base + shift,
         "final_gap": 0.1}
        for seed, base in enumerate([0.5, 0.7, 0.9])
        for arm, shift in (("none", 0.0), ("l2_sp", 0.05))
    ]  # fmt: skip
    none, l2_sp = transfer_study.summarize(rows)
    assert none["final_val_accuracy"]["mean"] == pytest.approx(0.7)
    assert none["final_val_accuracy"]["low"] < 0.5  # the seeds spread widely ...
    paired = l2_sp["final_val_accuracy_vs_none"]
    assert paired["mean"] == pytest.approx(0.05)  # ... but the paired difference does not
    assert paired["high"] - paired["low"] == pytest.approx(0, abs=1e-9)
    assert math.isnan(transfer_study.t_interval([0.5])["low"])
