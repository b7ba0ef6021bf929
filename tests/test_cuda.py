"""CUDA / bf16 paths: the world model, the planners and a pretraining step on a GPU agree with
fp32. Skipped where CUDA is unavailable (CI); run on a GPU machine with
``python -m pytest tests/test_cuda.py``."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from jepa_world import WorldModel
from jepa_world.masks import MultiBlockMaskSampler
from jepa_world.training.runtime import Runtime
from jepa_world.vjepa import VJEPA, build_encoder, build_predictor, target_features
from planners import get_planner

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
CUDA = torch.device("cuda")


def relative_error(value: torch.Tensor, reference: torch.Tensor) -> float:
    value, reference = value.detach().float().cpu(), reference.detach().float().cpu()
    return float((value - reference).abs().mean() / reference.abs().mean())


def fp32(model: WorldModel) -> WorldModel:
    """The same model with its CUDA bf16 autocast switched off."""
    model.precision = "fp32"
    return model


def inputs(model: WorldModel, batch: int = 4, horizon: int = 3):
    g = torch.Generator().manual_seed(0)
    s = model.image_size
    frames = torch.randint(0, 256, (batch, s, s, 3), generator=g, dtype=torch.uint8)
    actions = torch.rand(batch, horizon, model.frameskip, model.action_dim, generator=g) * 2 - 1
    proprio = torch.randn(batch, model.proprio_dim, generator=g) if model.proprio_dim else None
    return frames, actions, proprio


@pytest.fixture
def no_tf32():
    """fp32 on the GPU as on the CPU: no TF32 in matrix products or cuDNN convolutions."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


@torch.no_grad()
def test_world_model_bf16_on_cuda_matches_fp32_on_cpu(no_tf32):
    cpu = WorldModel.load("reach")
    frames, actions, proprio = inputs(cpu)
    z_cpu = cpu.encode(frames)
    rolled_cpu = cpu.rollout(z_cpu, actions, proprio)
    gpu = WorldModel.load("reach", device="cuda")
    assert gpu.device.type == "cuda"
    z = gpu.encode(frames)
    rolled = gpu.rollout(z, actions, proprio)
    assert z.device.type == "cuda" and z.dtype == torch.float32
    assert rolled.dtype == torch.float32 and torch.isfinite(rolled).all()
    # the same model in fp32 on the GPU: only the order of summation differs
    exact = fp32(WorldModel.load("reach", device="cuda"))
    z32 = exact.encode(frames)
    errors = {"encode bf16": relative_error(z, z_cpu),
              "rollout bf16": relative_error(rolled, rolled_cpu),
              "encode fp32": relative_error(z32, z_cpu),
              "rollout fp32": relative_error(exact.rollout(z32, actions, proprio), rolled_cpu)}
    print("relative mean abs error vs fp32 on the CPU:", errors)
    assert errors["encode bf16"] < 0.01 and errors["rollout bf16"] < 0.01  # H200: 6e-4, 7e-4
    assert errors["encode fp32"] < 1e-4 and errors["rollout fp32"] < 1e-4  # H200: 1.5e-7


@pytest.mark.parametrize("name", ["cem", "mppi", "gradient"])
def test_planners_on_cuda(name):
    model = WorldModel.load("reach", device="cuda")
    frames, _, proprio = inputs(model, batch=3)
    with torch.no_grad():
        z = model.encode(frames)
    plan_fn, settings_cls = get_planner(name)
    sizes = {"cem": {"samples": 64, "elites": 8, "iterations": 3},
             "mppi": {"samples": 64, "elites": 8, "iterations": 3},
             "gradient": {"steps": 5, "restarts": 2}}[name]
    result = plan_fn(model, z[:2], z[2:], proprio=proprio[:2], horizon=3,
                     generator=[torch.Generator().manual_seed(s) for s in (0, 1)], **sizes)
    assert result.actions.shape == (2, 3, model.frameskip, model.action_dim)
    assert result.actions.device.type == "cuda"
    assert result.actions.abs().max() <= 1.0 and torch.isfinite(result.energy).all()
    # the energy the planner reports (bf16 rollouts) is what fp32 on the CPU predicts
    cpu = WorldModel.load("reach")
    with torch.no_grad():
        z_cpu = cpu.encode(frames)
        rolled = cpu.rollout(z_cpu[:2], result.actions.cpu(), proprio[:2])
    if name == "cem":  # keep_best: the energy of the returned actions, last block, l1
        energy = cpu.energy(rolled[:, -1], z_cpu[2:], settings_cls().metric)
        np.testing.assert_allclose(result.energy.cpu().numpy(), energy.numpy(), rtol=0.1)


def test_pretraining_step_bf16_matches_fp32_on_cuda():
    model_cfg = {"size": "tiny", "patch_size": 16, "tubelet_size": 2, "uniform_power": True,
                 "use_rope": False, "predictor": {"embed_dim": 96, "depth": 2, "num_heads": 4}}
    data_cfg = {"resolution": 64, "frames_per_clip": 8}
    torch.manual_seed(0)
    encoder = build_encoder(model_cfg, data_cfg)
    predictor = build_predictor(model_cfg, data_cfg, encoder.embed_dim, 2)
    model = VJEPA(encoder, predictor).to(CUDA).train()
    target = copy.deepcopy(encoder).to(CUDA).eval()
    video = torch.randn(4, 3, 8, 64, 64, generator=torch.Generator().manual_seed(1)).to(CUDA)
    masks = MultiBlockMaskSampler(encoder.grid_size)(4, torch.Generator().manual_seed(2))
    masks = [(c.to(CUDA), t.to(CUDA)) for c, t in masks]

    def loss_and_grads(bf16: bool) -> tuple[float, torch.Tensor]:
        model.zero_grad(set_to_none=True)
        with Runtime(CUDA).autocast(bf16):
            loss = model(video, masks, target_features(target, video))
        loss.backward()
        grads = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
        return float(loss.detach()), grads.float()

    loss32, grad32 = loss_and_grads(False)
    loss16, grad16 = loss_and_grads(True)
    cosine = float(torch.nn.functional.cosine_similarity(grad16, grad32, dim=0))
    print(f"loss fp32 {loss32:.5f}, bf16 {loss16:.5f}; gradient cosine {cosine:.5f}")
    assert np.isfinite(loss16) and torch.isfinite(grad16).all()
    assert abs(loss16 - loss32) / loss32 < 0.005  # H200: 0.81814 vs 0.81815
    assert cosine > 0.995  # H200: 0.99994
