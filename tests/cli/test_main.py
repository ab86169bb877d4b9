"""`backbone-reg regularize` and `backbone-reg audit` through click's CliRunner."""

import json

import pytest
from click.testing import CliRunner

from backbone_regularizer.pipeline.cli.main import main
from tests import zoo


@pytest.fixture
def source(tmp_path):
    path = tmp_path / "backbone.keras"
    zoo.mobilenet_v2(include_top=False).save(path)
    return path


def test_regularize_writes_model_and_report_and_exits_zero(source, tmp_path):
    dst = tmp_path / "out" / "reg.keras"
    result = CliRunner().invoke(main, ["regularize", str(source), str(dst), "--l2", "1e-3"])
    assert result.exit_code == 0, result.output
    assert "L2(l2=0.001) on 52 weights" in result.output
    assert "predictions_unchanged" in result.output
    assert dst.exists() and (tmp_path / "out" / "reg.report.json").exists()


def test_regularize_json_report(source, tmp_path):
    args = ["regularize", str(source), str(tmp_path / "r.keras"), "--l1", "1e-5", "--json"]
    args += ["--include-norm", "--exclude", "block_1_"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["regularizer"]["class_name"] == "L1"
    assert report["validation"]["passed"] is True
    assert not any("block_1_" in w["path"] for w in report["regularized"])
    assert (
        report["counts"]["by_kind"]["gamma"]["regularized"] == 49
    )  # 52 BN minus block_1 expand, depthwise, project BN


@pytest.mark.parametrize(
    "args, message",
    [
        (["--l2", "-1"], "Expected a finite number >= 0. Received: l2=-1.0"),
        (["--include", "no_such_layer"], "matches no layer"),
        (["--l2", "nan"], "Received: l2=nan"),
    ],
)
def test_regularize_bad_arguments_exit_nonzero(source, tmp_path, args, message):
    dst = tmp_path / "o.keras"
    result = CliRunner().invoke(main, ["regularize", str(source), str(dst), *args])
    assert result.exit_code == 1
    assert message in result.output
    assert not dst.exists()


def test_regularize_non_numeric_factor_is_a_usage_error(source, tmp_path):
    result = CliRunner().invoke(
        main, ["regularize", str(source), str(tmp_path / "o.keras"), "--l2", "x"]
    )
    assert result.exit_code == 2
    assert "'x' is not a valid float" in result.output


def test_audit_before_and_after(source, tmp_path):
    result = CliRunner().invoke(main, ["audit", str(source), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)["summary"]
    assert summary["regularized"] == 0 and len(summary["missed"]) == 52
    dst = tmp_path / "r.keras"
    assert CliRunner().invoke(main, ["regularize", str(source), str(dst)]).exit_code == 0
    result = CliRunner().invoke(main, ["audit", str(dst)])
    assert result.exit_code == 0
    assert "52 of 156 weights regularized; 0 of 52 kernel-like weights missed" in result.output


def test_audit_missing_file(tmp_path):
    result = CliRunner().invoke(main, ["audit", str(tmp_path / "missing.keras")])
    assert result.exit_code == 1
    assert "missing" in result.output


def test_audit_plot_writes_a_png(source, tmp_path):
    plot = tmp_path / "coverage.png"
    result = CliRunner().invoke(main, ["audit", str(source), "--plot", str(plot)])
    assert result.exit_code == 0, result.output
    assert f"wrote {plot}" in result.output
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_add_span_refuses_a_non_demo_config(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # its log goes to the default root, runs/demo
    config = tmp_path / "mine.json"
    config.write_text(json.dumps({"data_root": str(tmp_path / "my-images")}))
    result = CliRunner().invoke(main, ["add-span", "--config", str(config)])
    assert result.exit_code == 1
    assert "add-span writes demo images only" in result.output
    assert not (tmp_path / "my-images").exists()
