"""AdamW with V-JEPA's parameter groups: no weight decay on biases and 1-D parameters."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn


def param_groups(modules: Iterable[nn.Module], lr_scale: float = 1.0, tag: str = "") -> list[dict]:
    """``lr_scale``: these parameters learn at that multiple of the schedule's rate (an
    encoder fine-tuned from its pretrained initialisation); ``tag`` lets ``hold`` find them."""
    decay, no_decay = [], []
    for module in modules:
        for name, param in module.named_parameters():
            if not param.requires_grad:
                continue
            (no_decay if param.ndim <= 1 or name.endswith(".bias") else decay).append(param)
    return [
        {"params": decay, "apply_wd": True, "lr_scale": lr_scale, "tag": tag},
        {"params": no_decay, "apply_wd": False, "weight_decay": 0.0, "lr_scale": lr_scale,
         "tag": tag},
    ]


def make_adamw(
    modules: Iterable[nn.Module] | list[dict],
    lr: float,
    weight_decay: float,
    betas: tuple[float, float] = (0.9, 0.999),
) -> torch.optim.AdamW:
    """``modules``, or parameter groups made by ``param_groups``."""
    modules = list(modules)
    groups = modules if modules and isinstance(modules[0], dict) else param_groups(modules)
    return torch.optim.AdamW(groups, lr=lr, weight_decay=weight_decay, betas=betas)


def set_lr_and_wd(optimizer: torch.optim.Optimizer, lr: float, weight_decay: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)
        if group.get("apply_wd", True):
            group["weight_decay"] = weight_decay


def hold(optimizer: torch.optim.Optimizer, tag: str) -> None:
    """Keep the groups tagged ``tag`` where they are this step (learning rate 0: AdamW then
    moves neither by the gradient nor by weight decay; its moments still follow the gradient)."""
    for group in optimizer.param_groups:
        if group.get("tag") == tag:
            group["lr"] = 0.0
