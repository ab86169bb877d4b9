"""KerasHub backbones: penalties survive the `.keras` round trip, multi-input probes, exact counts.

KerasHub `Backbone`s serialize their constructor arguments and rebuild every layer on load, so
only the regularization plan saved with the model carries the penalties (`carried_by: plan`).
Every count below was measured on these tiny backbones, then asserted on the reloaded file.
"""

import json
import subprocess
import sys

import keras
import keras_hub  # noqa: F401  (registers the KerasHub classes before any load)
import numpy as np
import pytest

from backbone_regularizer.components.regularizer import (
    RegularizationSpec,
    VerificationError,
    regularize_file,
    verify,
    workflow,
)
from backbone_regularizer.components.regularizer.audit import audit
from backbone_regularizer.components.regularizer.fingerprint import predict_probe, probe_batch
from tests import zoo

L2 = RegularizationSpec(l2=1e-4)
FAMILIES = {
    # CNN: stem conv, stack 0 basic block (2 convs, identity shortcut), stack 1 basic block
    # with stride 2 (2 convs + a 1x1 shortcut conv) = 6 kernels; 6 BN gamma + 6 beta skipped.
    "resnet": (zoo.hub_resnet, {"kernel": 6}, 12),
    # CNN: stem conv, 2 dense blocks of one 1x1 + one 3x3 conv, one transition conv = 6;
    # 7 BN layers (gamma + beta) skipped.
    "densenet": (zoo.hub_densenet, {"kernel": 6}, 14),
    # ViT: patch conv + query/key/value/output + 2 MLP Dense = 7 kernels, the position
    # Embedding; skipped: 7 biases, 3 LayerNorm gamma + beta, the class token (no slot).
    "vit": (zoo.hub_vit, {"kernel": 7, "embeddings": 1}, 14),
    # DeiT: 7 kernels as ViT; its class token, distillation token and position embedding
    # are plain variables of one layer (no slot, not a default kind): skipped with 13 others.
    "deit": (zoo.hub_deit, {"kernel": 7}, 16),
    # DINOv2: 7 kernels; skipped: 7 biases, 3 LayerNorms x 2, 2 LayerScale `lambda1`,
    # cls token, mask token, position embeddings.
    "dinov2": (zoo.hub_dinov2, {"kernel": 7}, 18),
    # BERT: token + segment Embedding (slots) + PositionEmbedding `embeddings` (no slot: the
    # plan carries it); kernels: 4 attention + 2 feed-forward + the pooler Dense.
    "bert": (zoo.hub_bert, {"kernel": 7, "embeddings": 3}, 13),
    # DistilBERT: token + position embeddings; 4 attention + 2 feed-forward kernels.
    "distilbert": (zoo.hub_distilbert, {"kernel": 6, "embeddings": 2}, 12),
    # GPT-2: token + position embeddings; 4 attention + 2 feed-forward kernels.
    "gpt2": (zoo.hub_gpt2, {"kernel": 6, "embeddings": 2}, 12),
    # Llama: token embedding; 4 attention + 3 gated feed-forward kernels; skipped: the
    # untied `reverse_embeddings` and 3 RMSNorm `scale` (no slot, not default kinds).
    "llama": (zoo.hub_llama, {"kernel": 7, "embeddings": 1}, 4),
    # Layer names regenerated on load (root of VGG, inner layers of MiT): weights are matched
    # by position. VGG: 2 convs, 2 biases skipped.
    "vgg": (zoo.hub_vgg, {"kernel": 2}, 2),
    # MiT, per stage: patch conv, query/key/value/projection Dense, 2 Mix-FFN Dense and a
    # depthwise conv, plus the spatial-reduction conv of stage 1 (ratio 2): 8 + 7 kernels.
    "mit": (zoo.hub_mit, {"kernel": 15, "depthwise": 2}, 35),
}


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    """Each tiny backbone saved once as `.keras`; built lazily, shared by the module."""
    folder = tmp_path_factory.mktemp("kerashub")
    saved = {}

    def get(name):
        if name not in saved:
            saved[name] = folder / f"{name}.keras"
            FAMILIES[name][0]().save(saved[name])
        return saved[name]

    return get


@pytest.mark.parametrize("name", list(FAMILIES))
def test_every_penalty_is_live_on_the_reloaded_file(name, sources, tmp_path):
    _, expected, skipped = FAMILIES[name]
    dst = tmp_path / "dst.keras"
    report = regularize_file(sources(name), dst, L2)
    regularized = {k: v["regularized"] for k, v in report.counts["by_kind"].items()}
    assert {k: v for k, v in regularized.items() if v} == expected
    assert report.counts["skipped"] == skipped
    total = sum(expected.values())
    # The five checks passed on the reloaded file, and the constructor-built layers carry
    # nothing by themselves: every penalty came back through the plan.
    assert [c["name"] for c in report.validation["reloaded"]][-1] == "predictions_unchanged"
    assert report.counts["carried_by"] == {"plan": total}
    saved = json.loads(workflow.report_path_for(dst).read_text())
    assert {w["carried_by"] for w in saved["regularized"]} == {"plan"}

    reloaded = keras.saving.load_model(dst)
    assert type(reloaded).__module__.startswith("keras_hub")  # the backbone itself, no wrapper
    assert len(reloaded.losses) == total
    penalty = float(sum(float(x) for x in reloaded.losses))
    assert penalty == pytest.approx(report.penalty["total_in_loss"], rel=1e-6)
    assert audit(reloaded)["summary"]["regularized"] == total


def test_a_plain_save_loses_the_penalties_and_coverage_says_so(sources, tmp_path):
    """Why the plan exists: the layer attributes alone do not survive KerasHub's rebuild."""
    report = regularize_file(sources("vit"), tmp_path / "dst.keras", L2)
    model = keras.saving.load_model(tmp_path / "dst.keras")
    assert len(model.losses) == 8
    model.save(tmp_path / "plain.keras")  # attributes set on every layer, but no plan
    stripped = keras.saving.load_model(tmp_path / "plain.keras")
    assert stripped.losses == []
    with pytest.raises(VerificationError, match="variable.regularizer") as err:
        verify(stripped, report)
    assert err.value.check == "coverage" and len(err.value.weights) == 8


def test_selected_tokens_and_position_embeddings_become_regularized(sources, tmp_path):
    spec = RegularizationSpec(
        l2=1e-4, extra_kinds=("class_token", "distillation_token", "position_embedding")
    )
    report = regularize_file(sources("deit"), tmp_path / "dst.keras", spec)
    unslotted = sorted(w["path"] for w in report.regularized if w["slot"] is None)
    assert unslotted == [
        "deit/deit_patching_and_embedding/class_token",
        "deit/deit_patching_and_embedding/distillation_token",
        "deit/deit_patching_and_embedding/position_embedding",
    ]
    reloaded = keras.saving.load_model(tmp_path / "dst.keras")
    assert len(reloaded.losses) == 7 + 3


def test_freeze_policy_survives_the_rebuild(sources, tmp_path):
    spec = RegularizationSpec(l2=1e-4, include_norm=True)
    report = regularize_file(sources("resnet"), tmp_path / "dst.keras", spec)
    # 6 kernels live; 6 BN layers frozen (gamma + beta regularized but not in the loss).
    assert report.counts["regularized_trainable"] == 6
    assert report.counts["regularized_frozen"] == 12
    reloaded = keras.saving.load_model(tmp_path / "dst.keras")
    bns = [x for x in reloaded._flatten_layers() if isinstance(x, keras.layers.BatchNormalization)]
    assert len(bns) == 6 and not any(x.trainable for x in bns)
    assert len(reloaded.losses) == 6


def test_multi_input_probe_batch_follows_the_inputs(sources):
    model = keras.saving.load_model(sources("bert"))
    batch = probe_batch(model, 3, seed=0)
    assert sorted(batch) == ["padding_mask", "segment_ids", "token_ids"]
    assert all(a.shape == (3, 8) and a.dtype == np.int32 for a in batch.values())
    assert (batch["padding_mask"] == 1).all()
    assert batch["token_ids"].min() >= 0 and batch["token_ids"].max() < 50
    assert set(np.unique(batch["segment_ids"])) <= {0, 1}  # feeds Embedding(num_segments=2)
    again = probe_batch(model, 3, seed=0)
    assert all(np.array_equal(batch[k], again[k]) for k in batch)
    other = probe_batch(model, 3, seed=1)
    assert not np.array_equal(batch["token_ids"], other["token_ids"])
    outputs = predict_probe(model, batch)
    assert all(np.isfinite(o).all() for o in outputs)


def test_reloaded_in_a_fresh_process_with_a_plain_load_model(sources, tmp_path):
    """Weight paths, not object identities, key the plan: a new process restores it."""
    dst = tmp_path / "dst.keras"
    report = regularize_file(sources("gpt2"), dst, L2)
    code = (
        "import keras, keras_hub, backbone_regularizer.components.regularizer;"
        f"m = keras.saving.load_model({str(dst)!r});"
        "print(len(m.losses), float(sum(float(x) for x in m.losses)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    terms, penalty = out.stdout.split()
    assert int(terms) == 8
    assert float(penalty) == pytest.approx(report.penalty["total_in_loss"], rel=1e-6)
