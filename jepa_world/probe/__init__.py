"""Frozen evaluation: V-JEPA's attentive probe on a frozen encoder, against a random encoder.

    python -m jepa_world.probe checkpoint=runs/pretrain data.train=data/reach
    python -m jepa_world.probe task=classification data.index_train=train.txt \
        data.index_val=val.txt
    python -m jepa_world.probe released=true checkpoint=vitl16.pth task=classification ...

Features of the frozen encoder are computed once per sample (eval mode, no grad) and kept in
memory; the probe (one learned query token, one cross-attention block, LayerNorm, Linear) then
trains on them, which is fast even on a CPU. The same probe is trained on the features of a
randomly initialised encoder of the same architecture, so the report says how much of the score
comes from pretraining rather than from the architecture and the probe alone.

Tasks
- regression: recorded states of a trajectory dataset (``python -m envs.collect``) from single
  frames (or short clips ending at the frame); R^2 per target on held-out episodes.
- classification: clips of the videos of a V-JEPA index file (``path label`` per line);
  top-1 accuracy.

Modules: ``model`` (the probe), ``fitting`` (train and score one probe), ``targets`` (what is
predicted), ``features`` (encoder inputs and cached tokens), ``regression`` and
``classification`` (the two kinds of data), ``command`` (the command line).
"""

from jepa_world.probe.classification import LabelledVideos, class_names, read_labelled_index
from jepa_world.probe.command import evaluate, format_report, main
from jepa_world.probe.features import ClipShape, extract_features, pool_tokens, prepare_frames
from jepa_world.probe.fitting import (
    ProbeData,
    ProbeSettings,
    fit_and_score,
    predict,
    r2_scores,
    train_probe,
)
from jepa_world.probe.model import AttentiveProbe, CrossAttention, CrossAttentionBlock
from jepa_world.probe.regression import open_datasets, split_episodes
from jepa_world.probe.targets import resolve_targets, target_names, target_values

__all__ = [
    "AttentiveProbe",
    "ClipShape",
    "CrossAttention",
    "CrossAttentionBlock",
    "LabelledVideos",
    "ProbeData",
    "ProbeSettings",
    "class_names",
    "evaluate",
    "extract_features",
    "fit_and_score",
    "format_report",
    "main",
    "open_datasets",
    "pool_tokens",
    "predict",
    "prepare_frames",
    "r2_scores",
    "read_labelled_index",
    "resolve_targets",
    "split_episodes",
    "target_names",
    "target_values",
    "train_probe",
]
