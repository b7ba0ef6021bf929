"""Training one probe on cached features and scoring it: R^2 or top-1 accuracy."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from jepa_world.probe.model import AttentiveProbe
from jepa_world.training.cli import UserError
from jepa_world.training.optim import make_adamw, set_lr_and_wd
from jepa_world.training.schedules import warmup_cosine


@dataclass
class ProbeSettings:
    """Optimisation of one probe (the ``probe`` section of the config)."""

    steps: int = 1000
    batch_size: int = 128
    lr: float = 1e-3
    warmup_steps: int = 50
    weight_decay: float = 0.01
    num_heads: int = 4
    mlp_ratio: float = 4.0
    cpu_threads: int | None = 1  # torch threads while training on the CPU; None: unchanged


def train_probe(
    features: Tensor,
    targets: Tensor,
    task: str,
    num_outputs: int,
    settings: ProbeSettings,
    seed: int,
    device: torch.device | str = "cpu",
    desc: str = "probe",
    progress: bool = False,
) -> tuple[AttentiveProbe, float]:
    """Train a probe on cached tokens [N, K, D]; returns it (eval mode) and the last loss.

    Regression targets [N, M] are expected standardised (MSE); classification targets are class
    ids [N] (cross-entropy). Batches and init depend only on ``seed``: reruns are identical.
    The probe is small: on the CPU extra threads mostly wait on each other (``cpu_threads``).
    """
    device = torch.device(device)
    threads = torch.get_num_threads()
    if device.type == "cpu" and settings.cpu_threads:
        torch.set_num_threads(settings.cpu_threads)
    try:
        return _train_probe(
            features, targets, task, num_outputs, settings, seed, device, desc, progress
        )
    finally:
        torch.set_num_threads(threads)


def _train_probe(
    features: Tensor,
    targets: Tensor,
    task: str,
    num_outputs: int,
    settings: ProbeSettings,
    seed: int,
    device: torch.device,
    desc: str,
    progress: bool,
) -> tuple[AttentiveProbe, float]:
    from tqdm import tqdm

    torch.manual_seed(seed)
    probe = AttentiveProbe(
        features.shape[-1], num_outputs, settings.num_heads, settings.mlp_ratio
    ).to(device)
    optimizer = make_adamw([probe], lr=settings.lr, weight_decay=settings.weight_decay)
    generator = torch.Generator().manual_seed(seed)
    n = features.shape[0]
    batch = min(settings.batch_size, n)
    order, pos = torch.randperm(n, generator=generator), 0
    loss_value = float("nan")
    probe.train()
    with tqdm(
        total=settings.steps,
        desc=desc,
        unit="step",
        disable=not progress,
        dynamic_ncols=True,
        leave=False,
    ) as bar:
        for step in range(settings.steps):
            if pos + batch > n:
                order, pos = torch.randperm(n, generator=generator), 0
            idx = order[pos : pos + batch]
            pos += batch
            lr = warmup_cosine(step, settings.steps, settings.warmup_steps, 0.0, settings.lr, 0.0)
            set_lr_and_wd(optimizer, lr, settings.weight_decay)
            out = probe(features[idx].to(device, torch.float32))
            y = targets[idx].to(device)
            loss = F.mse_loss(out, y) if task == "regression" else F.cross_entropy(out, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss_value = float(loss.detach())
            if step % 20 == 0 or step + 1 == settings.steps:
                bar.set_postfix(loss=f"{loss_value:.4f}")
            bar.update(1)
    if not math.isfinite(loss_value) and settings.steps > 0:
        raise UserError(f"probe loss is {loss_value}: lower probe.lr (now {settings.lr})")
    return probe.eval(), loss_value


@torch.no_grad()
def predict(
    probe: AttentiveProbe, features: Tensor, batch_size: int = 256, device: Any = "cpu"
) -> Tensor:
    """Probe outputs [N, out_dim] (float32, CPU) for cached tokens [N, K, D]."""
    probe.eval()
    outs = [
        probe(features[i : i + batch_size].to(device, torch.float32)).float().cpu()
        for i in range(0, features.shape[0], batch_size)
    ]
    return torch.cat(outs) if outs else torch.zeros(0, probe.head.out_features)


def r2_scores(targets: Tensor, predictions: Tensor) -> Tensor:
    """Coefficient of determination per column; NaN where the targets do not vary."""
    y, p = targets.double(), predictions.double()
    ss_res = ((y - p) ** 2).sum(0)
    ss_tot = ((y - y.mean(0)) ** 2).sum(0)
    r2 = 1.0 - ss_res / ss_tot
    return torch.where(ss_tot > 0, r2, torch.full_like(r2, float("nan")))


@dataclass
class ProbeData:
    """Cached features of every encoder and the targets, for both sides of the split."""

    train: dict[str, Tensor]  # encoder name -> tokens [N, K, D]
    val: dict[str, Tensor]
    y_train: Tensor  # regression: [N, M] float; classification: class ids [N]
    y_val: Tensor
    info: dict[str, Any]  # what the report and the JSON say about the data
    names: list[str]  # target columns, or class names
    train_groups: np.ndarray | None = None  # per training sample: its episode (or video)

    def subset(self, indices: np.ndarray) -> ProbeData:
        """The same data with only these training samples (validation unchanged)."""
        idx = torch.as_tensor(indices, dtype=torch.long)
        groups = None if self.train_groups is None else self.train_groups[indices]
        return replace(
            self,
            train={name: tokens[idx] for name, tokens in self.train.items()},
            y_train=self.y_train[idx],
            train_groups=groups,
        )


def fit_and_score(
    data: ProbeData,
    name: str,
    task: str,
    settings: ProbeSettings,
    seed: int,
    device: torch.device | str = "cpu",
    progress: bool = False,
) -> dict[str, Any]:
    """Train a probe on one encoder's cached features and score it on both splits.

    Regression targets are standardised with the train split's mean / std for training (so
    every target weighs the same in the loss); R^2 is computed in the targets' own units.
    """
    started = time.perf_counter()
    if task == "regression":
        mean, std = data.y_train.mean(0), data.y_train.std(0, unbiased=False)
        std = torch.where(std > 1e-8, std, torch.ones_like(std))
        fit, outputs = (data.y_train - mean) / std, data.y_train.shape[1]
    else:
        fit, outputs = data.y_train, len(data.names)
    probe, loss = train_probe(
        data.train[name],
        fit,
        task,
        outputs,
        settings,
        seed,
        device,
        desc=f"probe {name}",
        progress=progress,
    )
    pred_val = predict(probe, data.val[name], device=device)
    pred_train = predict(probe, data.train[name], device=device)
    if task == "regression":
        r2_val = r2_scores(data.y_val, pred_val * std + mean)
        rmse_val = ((data.y_val.double() - (pred_val * std + mean).double()) ** 2).mean(0).sqrt()
        result = {
            "mean_r2": _nanmean(r2_val),
            "r2": {n: float(v) for n, v in zip(data.names, r2_val, strict=True)},
            "rmse": {n: float(v) for n, v in zip(data.names, rmse_val, strict=True)},
            "train_mean_r2": _nanmean(r2_scores(data.y_train, pred_train * std + mean)),
        }
    else:
        result = {
            "accuracy": float((pred_val.argmax(1) == data.y_val).float().mean()),
            "train_accuracy": float((pred_train.argmax(1) == data.y_train).float().mean()),
        }
    return {**result, "final_loss": loss, "probe_seconds": time.perf_counter() - started}


def _nanmean(values: Tensor) -> float:
    finite = values[torch.isfinite(values)]
    return float(finite.mean()) if finite.numel() else float("nan")
