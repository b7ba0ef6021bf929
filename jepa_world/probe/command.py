"""python -m jepa_world.probe: the frozen evaluation, its report and its metrics file."""

from __future__ import annotations

import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from jepa_world.encoders import fresh_like, load_encoder
from jepa_world.files import write_json_atomic
from jepa_world.models import VisionTransformer
from jepa_world.probe.classification import classification_data, open_classification
from jepa_world.probe.features import ClipShape, clip_shape
from jepa_world.probe.fitting import ProbeSettings, fit_and_score
from jepa_world.probe.low_shot import low_shot
from jepa_world.probe.regression import open_regression, regression_data
from jepa_world.schemas.probe import CACHE_DTYPES as CACHE_DTYPE_NAMES
from jepa_world.schemas.probe import ProbeConfig
from jepa_world.training.cli import UserError, load_config, typed_config
from jepa_world.training.runtime import Runtime, resolve_device

CACHE_DTYPES = {name: getattr(torch, name) for name in CACHE_DTYPE_NAMES}


def probe_settings(cfg: ProbeConfig, encoder: VisionTransformer) -> ProbeSettings:
    p = cfg.probe
    settings = ProbeSettings(
        steps=p.steps,
        batch_size=p.batch_size,
        lr=p.lr,
        warmup_steps=p.warmup_steps,
        weight_decay=p.weight_decay,
        num_heads=p.num_heads or encoder.num_heads,
        mlp_ratio=p.mlp_ratio,
        cpu_threads=p.cpu_threads,
    )
    if encoder.embed_dim % settings.num_heads:
        raise UserError(
            f"probe.num_heads={settings.num_heads} does not divide the encoder width "
            f"{encoder.embed_dim}"
        )
    return settings


def compared_encoders(cfg: ProbeConfig, shape: ClipShape) -> dict[str, VisionTransformer]:
    """The encoders of ``compare`` (e.g. a pixel-reconstruction run), fed the same inputs."""
    encoders = {}
    for name, path in cfg.compare.items():
        encoder = load_encoder(path, key=cfg.key).encoder
        if shape.resolution % encoder.patch_size or (
            shape.frames > 1 and shape.frames % encoder.tubelet_size
        ):
            raise UserError(
                f"compare.{name}: its encoder (patch {encoder.patch_size}, tubelet "
                f"{encoder.tubelet_size}) cannot read {shape.frames}-frame inputs at "
                f"{shape.resolution} px"
            )
        encoders[name] = encoder
    return encoders


def evaluate(cfg: ProbeConfig | Any) -> dict[str, Any]:
    """Run the whole frozen evaluation that ``cfg`` (the schema, or a composed config checked
    against it here) describes; returns the metrics summary."""
    if not isinstance(cfg, ProbeConfig):
        cfg = typed_config(ProbeConfig, cfg)
    task = cfg.task
    rt = Runtime(resolve_device(cfg.device))
    seed, progress = cfg.seed, cfg.progress
    # Data first: bad paths and index files fail before the encoder is loaded.
    sources = open_regression(cfg) if task == "regression" else open_classification(cfg)
    frozen = load_encoder(cfg.checkpoint, released=cfg.released, key=cfg.key)
    encoder = frozen.encoder
    shape = clip_shape(cfg, frozen, task)
    encoders = {"pretrained": encoder}
    if cfg.compare_random:
        encoders["random"] = fresh_like(encoder, seed)
    encoders.update(compared_encoders(cfg, shape))
    settings = {name: probe_settings(cfg, enc) for name, enc in encoders.items()}

    started = time.perf_counter()
    extract = dict(
        rt=rt,
        bf16=cfg.bf16,
        progress=progress,
        cache_dtype=CACHE_DTYPES[cfg.probe.cache_dtype],
        pool=tuple(cfg.pool) if cfg.pool else None,
    )
    build = regression_data if task == "regression" else classification_data
    data = build(cfg, sources, encoders, shape, cfg.probe.encode_batch_size, extract)
    feature_seconds = time.perf_counter() - started
    results = {
        name: fit_and_score(data, name, task, settings[name], seed, rt.device, progress)
        for name in encoders
    }
    low = None
    if cfg.low_shot.fractions:
        low = {
            name: low_shot(
                data,
                name,
                task,
                settings[name],
                [*cfg.low_shot.fractions],
                cfg.low_shot.splits,
                seed,
                rt.device,
                progress,
                full=results[name],
            )
            for name in encoders
        }

    metric = "mean_r2" if task == "regression" else "accuracy"
    gap = None
    if "random" in results:
        gap = results["pretrained"][metric] - results["random"][metric]
    summary: dict[str, Any] = {
        "task": task,
        "metric": metric,
        "checkpoint": frozen.source,
        "encoder": {
            "size": frozen.name,
            "embed_dim": encoder.embed_dim,
            "depth": encoder.depth,
            "tokens_per_sample": int(data.val["pretrained"].shape[1]),
            "frames_per_sample": shape.frames,
            "frame_step": shape.frame_step,
            "resolution": shape.resolution,
            "pool": cfg.pool,
        },
        "compared": dict(cfg.compare),
        "probe": dict(settings["pretrained"].__dict__),
        "seed": seed,
        "data": data.info,
        "results": results,
        "low_shot": low,
        "gap": gap,
        "feature_seconds": feature_seconds,
    }
    if task == "regression":
        summary["targets"] = data.names
    return summary


def format_report(summary: dict[str, Any]) -> str:
    """The one-screen table: encoder | metric | value for pretrained vs random, and the gap."""
    task, metric, results = summary["task"], summary["metric"], summary["results"]
    enc, data = summary["encoder"], summary["data"]
    label = "mean R^2 (val)" if task == "regression" else "top-1 accuracy (val)"
    what = "image" if enc["frames_per_sample"] == 1 else f"{enc['frames_per_sample']}-frame clip"
    lines = [
        f"probe: {task}, {data['train_samples']} train / {data['val_samples']} val samples "
        f"({what} at {enc['resolution']} px, {enc['tokens_per_sample']} tokens each), "
        f"{summary['probe']['steps']} probe steps, seed {summary['seed']}",
        f"encoder: {enc['size']} ({enc['embed_dim']} wide, {enc['depth']} deep) "
        f"from {summary['checkpoint']}",
        "",
        f"{'encoder':<12} {'metric':<22} {'value':>8}",
    ]
    for name, res in results.items():
        lines.append(f"{name:<12} {label:<22} {res[metric]:>8.3f}")
    if summary["gap"] is not None:
        lines.append(f"{'gap':<12} {label:<22} {summary['gap']:>+8.3f}")
    if task == "classification":
        lines.append(f"{'chance':<12} {'majority class (val)':<22} {data['chance']:>8.3f}")
    else:
        lines += ["", f"{'target (val R^2)':<18}" + "".join(f"{n:>12}" for n in results)]
        for target in summary["targets"]:
            lines.append(
                f"{target:<18}" + "".join(f"{r['r2'][target]:>12.3f}" for r in results.values())
            )
    if summary.get("low_shot"):
        lines += ["", *format_low_shot(summary)]
    return "\n".join(lines)


def format_low_shot(summary: dict[str, Any]) -> list[str]:
    """Mean +- std over the subsets, per fraction of the labels: the metric, then per target
    (regression: R^2 and RMSE in the target's units)."""
    low = summary["low_shot"]
    names = list(low)
    fractions = list(low[names[0]])
    metric = "mean R^2" if summary["task"] == "regression" else "top-1"
    cell = "{mean:>7.3f} +-{std:.3f}"
    lines = [
        f"low-shot: {metric} (val), mean +- std over the subsets of the labelled episodes",
        f"{'labels':<22}" + "".join(f"{n:>17}" for n in names),
    ]
    label = {f: _fraction_label(f, low[names[0]][f]) for f in fractions}
    for f in fractions:
        lines.append(
            f"{label[f]:<22}" + "".join(f"{cell.format(**low[n][f]):>17}" for n in names)
        )
    if summary["task"] == "regression":
        for stat in ("r2", "rmse"):
            for target in summary["targets"]:
                for f in fractions:
                    row = f"{target} {stat} {label[f]}"
                    values = [cell.format(**low[n][f]["targets"][target][stat]) for n in names]
                    lines.append(f"{row:<22}" + "".join(f"{v:>17}" for v in values))
    return lines


def _fraction_label(fraction: str, entry: dict[str, Any]) -> str:
    """"20 %", or "1 %: 1/5 = 20 %" where whole episodes cannot make the asked fraction."""
    asked, used = float(fraction), entry.get("used_fraction")
    if used is None or round(used * 100) == round(asked * 100):
        return f"{asked:.0%}"
    return f"{asked:.0%}: {entry['groups']}/{entry['of_groups']} = {used:.0%}"


def main(argv: list[str]) -> int:
    cfg = typed_config(ProbeConfig, load_config("probe", argv))
    summary = evaluate(cfg)
    print(format_report(summary))
    if cfg.json:
        path = Path(cfg.json).expanduser()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_json_atomic(path, {**summary, "config": asdict(cfg)})
        except OSError as exc:
            raise UserError(f"cannot write {path}: {exc.strerror or exc}") from None
        print(f"metrics: {path}", file=sys.stderr)
    return 0
