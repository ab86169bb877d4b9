"""The regularizer benchmark's functions on a tiny model: every row and table cell is filled."""

import keras

from benchmarks import regularizer_speed as bench
from tests import zoo


def tiny(weights=None, input_shape=None) -> keras.Model:
    """A builder with the keras.applications signature (both arguments ignored)."""
    return zoo.shared_layer()


def test_rows_and_tables_on_a_tiny_model():
    models = {"tiny": tiny}
    attach = bench.attach_vs_2019(repeats=1, models=models)
    fingerprint = bench.fingerprint_vs_parts(repeats=1, models=models)
    component = bench.component_vs_bare(repeats=1, models=models)
    (a,), (f,), (c,) = attach, fingerprint, component
    assert a["attach_speedup"] == a["legacy_2019_s"] / a["attach_s"]
    assert a["full_call_speedup"] == a["legacy_2019_s"] / a["full_call_s"]
    assert f["ratio_to_compiled"] == f["fingerprint_s"] / (f["compiled_forward_s"] + f["sha256_s"])
    assert f["compile_and_forward_s"] > f["compiled_forward_s"] > 0
    assert c["ratio"] == c["component_s"] / c["bare_s"]
    assert c["floor_ratio"] == c["floor_s"] / c["bare_s"] and c["floor_s"] > 0
    text = "\n".join(bench.tables(attach, fingerprint, component))
    assert text.count("| tiny |") == 3
    assert "full call" in text and "trace + first pass" in text and "component path" in text
    assert "floor vs bare" in text
