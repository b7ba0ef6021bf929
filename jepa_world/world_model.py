"""``WorldModel``: the latent dynamics model that planners search and RL code imports.

A V-JEPA encoder turns each frame into K tokens of width D, and an action-conditioned
predictor rolls those latents forward under action blocks of ``frameskip`` env steps. Built
frozen, the latent is the encoder's layer-normed tokens (optionally pooled to a smaller grid,
averaged or stacked: planning cost grows with K); built end to end, a latent head makes one
embedding per frame (K = 1) that encoder, head and predictor were trained together to predict.

This module is the composition; its parts live in their own modules: the encoder
(``models.vit``) with its latent layout (``models.frame_latents``) or latent head
(``models.latent_head``), the predictor (``models.ac_predictor``), the energy
(``latent_energy``), the config (``world_model_config``), input checks (``world_model_inputs``)
and the model folder (``model_files``: ``weights.safetensors`` + ``config.json`` +
``provenance.json``).
"""

from __future__ import annotations

import hashlib
import json
import warnings
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from jepa_world.latent_energy import latent_distance
from jepa_world.model_files import (
    CONFIG,
    PROVENANCE,
    READOUT_DIR,
    SHIPPED,
    WEIGHTS,
    read_config_json,
    read_weights,
    resolve_model_dir,
    shipped_names,
)
from jepa_world.models import EncoderConfig, VisionTransformer
from jepa_world.models.ac_predictor import ACPredictor, StepCache
from jepa_world.models.frame_latents import POOL_MODES, LatentLayout, frames_as_images, resized
from jepa_world.models.latent_head import LatentHead, LatentHeadConfig
from jepa_world.world_model_config import WorldModelConfig, checked_statistic
from jepa_world.world_model_inputs import InputChecks

# names that callers import from here
__all__ = ["CONFIG", "POOL_MODES", "PRECISIONS", "PROVENANCE", "SHIPPED", "WEIGHTS", "WorldModel",
           "WorldModelConfig", "resolve_model_dir", "shipped_names"]
# auto: bf16 autocast on CUDA, fp32 elsewhere; bf16 on a CPU with bf16 matrix units (AVX512-BF16,
# AMX) makes planning faster at some cost in precision (benchmarks/RESULTS.md, issue 15)
PRECISIONS = ("auto", "fp32", "bf16")
# how save stores floating weights; either loads into a model that computes in float32
WEIGHT_DTYPES = {"float32": torch.float32, "float16": torch.float16}


class WorldModel(InputChecks, nn.Module):
    """encode / predict / rollout / energy / save / load. Weights are frozen: no gradients flow
    to them, but gradients do flow to inputs that ask for them (the gradient planner).

    Latents are the encoder's layer-normed, pooled tokens standardised per channel with the
    training data's statistics (stored in the config), or, for a model built end to end, the
    latent head's one embedding per frame."""

    # rollouts read the frozen weights and nothing else: planners may score chunks of
    # candidates from several threads at once (planners.threads)
    parallel_scoring = True

    def __init__(
        self,
        config: WorldModelConfig,
        encoder: VisionTransformer | None = None,
        predictor: ACPredictor | None = None,
    ) -> None:
        super().__init__()
        self.config = config
        self.encoder = encoder if encoder is not None else _build_encoder(config.encoder)
        head = None
        if config.head is not None:
            head = LatentHead(self.encoder.embed_dim, LatentHeadConfig.from_dict(config.head),
                              tokens=self.encoder.grid_size[1] * self.encoder.grid_size[2])
        self.head = head
        self.layout = LatentLayout.build(
            tuple(self.encoder.grid_size[1:]), config.pool, config.pool_mode,
            self.encoder.embed_dim, None if head is None else head.config.dim,
        )
        self.tokens_per_frame, self.latent_dim = self.layout.tokens_per_frame, self.layout.latent_dim
        self.predictor = (
            predictor
            if predictor is not None
            else ACPredictor(
                latent_dim=self.latent_dim,
                tokens_per_frame=self.tokens_per_frame,
                action_dim=config.action_dim,
                frameskip=config.frameskip,
                proprio_dim=config.proprio_dim,
                **config.predictor,
            )
        )
        image_mean = checked_statistic("image_mean", config.image_mean, 3, positive=False)
        image_std = checked_statistic("image_std", config.image_std, 3, positive=True)
        self.register_buffer("image_mean", image_mean.view(1, 3, 1, 1), persistent=False)
        self.register_buffer("image_std", image_std.view(1, 3, 1, 1), persistent=False)
        d = self.latent_dim
        self.register_buffer("latent_mean", torch.zeros(d), persistent=False)
        self.register_buffer("latent_std", torch.ones(d), persistent=False)
        if config.latent_mean or config.latent_std:
            self.set_latent_stats(torch.tensor(config.latent_mean), torch.tensor(config.latent_std))
        p = config.proprio_dim
        mean = checked_statistic("proprio_mean", config.proprio_mean or [0.0] * p, p, positive=False)
        std = checked_statistic("proprio_std", config.proprio_std or [1.0] * p, p, positive=True)
        self.register_buffer("proprio_mean", mean, persistent=False)
        self.register_buffer("proprio_std", std, persistent=False)
        self._precision = "auto"
        self._compiled_step: Callable[..., Any] | None = None
        # a plain dict, so that an attached readout is no submodule: not in the weights, the
        # state dict or the fingerprint of the model it reads
        self._attached: dict[str, Any] = {}
        self._loaded_from: dict[str, Any] = {}  # folder and provenance of WorldModel.load
        self.freeze()

    @property
    def readout(self) -> Any:
        """The state readout fitted on this model's latents (``jepa_world.readout``), or None;
        planners add its term to the energy (``readout_weight``)."""
        return self._attached.get("readout")

    def attach_readout(self, readout: Any) -> WorldModel:
        self._attached["readout"] = readout.to(self.device)
        return self

    def _apply(self, fn: Any, *args: Any, **kwargs: Any) -> WorldModel:
        """``.to(device)`` and friends move the attached readout too."""
        super()._apply(fn, *args, **kwargs)
        for module in getattr(self, "_attached", {}).values():
            module._apply(fn, *args, **kwargs)
        return self

    @property
    def precision(self) -> str:
        """The arithmetic of encode / predict / rollout: "auto", "fp32" or "bf16" (autocast);
        outputs are float32 in every case."""
        return self._precision

    @precision.setter
    def precision(self, value: str) -> None:
        if value not in PRECISIONS:
            raise ValueError(f"unknown precision {value!r} (known: {', '.join(PRECISIONS)})")
        self._precision = value

    @property
    def compiled(self) -> bool:
        """Whether rollouts run the predictor's step through ``torch.compile``."""
        return self._compiled_step is not None

    def compile_rollouts(self, enabled: bool = True) -> WorldModel:
        """Run rollouts (``rollout``, ``rollout_many``, ``step``) through ``torch.compile`` of the
        predictor's cached step: fused kernels and far fewer kernel launches, for devices where
        a planner's many small kernels are launch-bound (on a small CPU the matrix products
        dominate and it is no faster: benchmarks/RESULTS.md). Each horizon step and batch shape
        compiles once on first use (tens of seconds; Inductor caches the code on disk for later
        processes); teacher-forced training is unaffected. ``enabled=False`` restores eager."""
        if not enabled:
            self._compiled_step = None
        elif self._compiled_step is None:
            self._compiled_step = torch.compile(self.predictor.step)
        return self

    def _step(self, *args: Any) -> tuple[Tensor, Tensor | None, StepCache]:
        return (self._compiled_step or self.predictor.step)(*args)

    def set_latent_stats(self, mean: Tensor, std: Tensor) -> None:
        """Standardise latents channel-wise with training-data statistics: every channel then
        counts alike in the predictor's inputs, its loss and the planning energy."""
        if mean.shape != (self.latent_dim,) or std.shape != (self.latent_dim,):
            raise ValueError(f"latent stats must have shape [{self.latent_dim}]")
        mean = checked_statistic("latent_mean", mean, self.latent_dim, positive=False)
        std = checked_statistic("latent_std", std, self.latent_dim, positive=True)
        self.latent_mean.copy_(mean)
        self.latent_std.copy_(std)
        self.config.latent_mean = [float(v) for v in mean]
        self.config.latent_std = [float(v) for v in std]

    def freeze(self) -> WorldModel:
        self.eval()
        for param in self.parameters():
            param.requires_grad_(False)
        return self

    # ------------------------------------------------------------------ properties
    @property
    def action_dim(self) -> int:
        return self.config.action_dim

    @property
    def frameskip(self) -> int:
        return self.config.frameskip

    @property
    def proprio_dim(self) -> int:
        return self.config.proprio_dim

    @property
    def image_size(self) -> int:
        return self.encoder.img_size

    @property
    def device(self) -> torch.device:
        return self.encoder.patch_embed.proj.weight.device

    @property
    def latent_shape(self) -> tuple[int, int]:
        return self.tokens_per_frame, self.latent_dim

    # ------------------------------------------------------------------ encode
    def encode(self, frames: Tensor | Any) -> Tensor:
        """uint8 [B,T,H,W,3] (or float [B,T,3,H,W] in [0,1]) -> latents [B,T,K,D].
        A single frame per item ([B,H,W,3] / [B,3,H,W]) gives [B,K,D]."""
        images, (b, t), single = frames_as_images(frames)
        x = resized(images.to(self.device), self.image_size)
        x = (x - self.image_mean) / self.image_std
        with self._autocast():
            tokens = self.encoder(x)  # a single image fills the tubelet by repetition
            if self.head is not None:
                embedded = self.head(tokens).float().unsqueeze(1)
        if self.head is None:
            embedded = self.layout.pool_tokens(F.layer_norm(tokens.float(), (tokens.shape[-1],)))
        z = (embedded - self.latent_mean) / self.latent_std
        z = z.reshape(b, t, self.tokens_per_frame, self.latent_dim)
        return z[:, 0] if single else z

    # ------------------------------------------------------------------ dynamics
    def predict(self, z: Tensor, actions: Tensor, proprio: Tensor | None = None) -> Tensor:
        """Next latents. z [B,K,D] with actions [B,fs,A] -> [B,K,D]; or a history z [B,T,K,D]
        with actions [B,T,fs,A] (and proprio [B,T,P]) -> teacher-forced predictions [B,T,K,D]."""
        z = self._as_float(z, "latents")
        if z.dim() == 3:
            actions = self._check_actions(actions, z.shape[0], None)
            return self.rollout(z, actions.unsqueeze(1), proprio)[:, 0]
        z = self._check_latents(z, history=True)
        b, t = z.shape[:2]
        actions = self._check_actions(actions, b, t)
        p = self._check_proprio(proprio, b, t)
        with self._autocast():
            z_next, _ = self.predictor(z, actions.flatten(2), p)
        return z_next.float()

    def rollout(self, z: Tensor, actions: Tensor, proprio: Tensor | None = None) -> Tensor:
        """Autoregressive rollout from the current latent z [B,K,D] under actions
        [B,H,fs,A] (or [B,H,A] when frameskip is 1) -> [B,H,K,D], one entry per action block.
        Keys/values of earlier steps are cached, so H steps cost H single-step passes."""
        z = self._check_latents(z, history=False)
        b = z.shape[0]
        actions = self._check_action_blocks(actions, b)
        p = self._check_proprio(proprio, b, None)
        return self._unroll(z, actions, p, None)

    def rollout_many(
        self,
        z: Tensor,
        actions: Tensor,
        proprio: Tensor | None = None,
        then: Callable[[Tensor, Tensor | None], Tensor] | None = None,
        then_blocks: int = 0,
    ) -> Tensor:
        """N candidate action sequences from each of E starts (what a planner scores): z
        [E,K,D], actions [E,N,H,fs,A], proprio [E,P] -> [E,N,H,K,D]. The same as ``rollout``
        on the starts repeated N times, with what depends on the start alone (the proprio
        decoder's output for the current proprio) computed once per start. ``then``: a policy
        (as in ``rollout_policy``, over the E*N rows, start-major) that acts ``then_blocks``
        more blocks closed loop after the sequences -> [E,N,H+then_blocks,K,D]."""
        if (then is None) != (int(then_blocks) == 0) or int(then_blocks) < 0:
            raise ValueError(f"then (a policy) and then_blocks >= 1 go together, got "
                             f"{'a' if then else 'no'} policy and then_blocks={then_blocks}")
        z = self._check_latents(z, history=False)
        e = z.shape[0]
        actions = self._as_float(actions, "actions")
        if actions.dim() not in (4, 5) or actions.shape[0] != e:
            raise ValueError(f"actions must be [{e},N,H,{self.frameskip},{self.action_dim}] "
                             f"(N sequences for each of the {e} starts), "
                             f"got {tuple(actions.shape)}")
        n = actions.shape[1]
        actions = self._check_action_blocks(actions.flatten(0, 1), e * n)
        p = self._check_proprio(proprio, e, None)
        cache = None
        if p is not None and self.predictor.decoder is not None:
            with self._autocast():
                decoded = self.predictor.decoder(p).repeat_interleave(n, dim=0)
            p = p.repeat_interleave(n, dim=0)
            cache = StepCache.first(len(self.predictor.blocks), p, decoded)
        elif p is not None:
            p = p.repeat_interleave(n, dim=0)
        predicted = self._unroll(z.repeat_interleave(n, dim=0), actions, p, cache, then,
                                 int(then_blocks))
        return predicted.reshape(e, n, *predicted.shape[1:])

    def _unroll(self, z: Tensor, actions: Tensor, p: Tensor | None, cache: StepCache | None,
                then: Callable[[Tensor, Tensor | None], Tensor] | None = None,
                then_blocks: int = 0) -> Tensor:
        """The cached predictor steps of ``rollout``: actions [B,H,fs*A] -> latents [B,H,K,D],
        then ``then_blocks`` closed-loop blocks of the policy ``then``."""
        outputs = []
        horizon = actions.shape[1]
        with self._autocast():
            for t in range(horizon):
                z, p, cache = self._step(z, actions[:, t], p, t, cache)
                outputs.append(z)
            for t in range(horizon, horizon + then_blocks):
                z, p, cache = self._policy_step(z, p, cache, then, t)
                outputs.append(z)
        return torch.stack(outputs, dim=1).float()

    def _policy_step(self, z: Tensor, p: Tensor | None, cache: StepCache | None,
                     act: Callable[[Tensor, Tensor | None], Tensor], t: int
                     ) -> tuple[Tensor, Tensor | None, StepCache]:
        """One block whose actions ``act`` chooses from the predicted latent and proprio (in
        the env's units)."""
        p_env = None if p is None else self._proprio_in_env_units(p)
        actions = self._check_actions(act(z.float(), p_env), z.shape[0], None).flatten(1)
        return self._step(z, actions, p, t, cache)

    def rollout_policy(
        self,
        z: Tensor,
        act: Callable[[Tensor, Tensor | None], Tensor],
        horizon: int,
        proprio: Tensor | None = None,
    ) -> tuple[Tensor, Tensor | None]:
        """Closed-loop rollout: each block's actions [B,fs,A] come from ``act(latent [B,K,D],
        proprio [B,P] in env units or None)`` applied to the predicted state, with the cached
        steps of ``rollout``. Gradients flow through the frozen model into ``act`` (a policy
        trained on the planner's objective). -> latents [B,H,K,D], proprio [B,H,P] or None."""
        z = self._check_latents(z, history=False)
        b = z.shape[0]
        p = self._check_proprio(proprio, b, None)
        if int(horizon) < 1:
            raise ValueError(f"horizon must be a positive integer, got {horizon}")
        cache, latents, proprios = None, [], []
        with self._autocast():
            for t in range(int(horizon)):
                z, p, cache = self._policy_step(z, p, cache, act, t)
                latents.append(z.float())
                if p is not None:
                    proprios.append(self._proprio_in_env_units(p))
        return torch.stack(latents, 1), (torch.stack(proprios, 1) if proprios else None)

    def step(
        self, z: Tensor, actions: Tensor, proprio: Tensor | None = None
    ) -> tuple[Tensor, Tensor | None]:
        """One action block from the current latent alone (no history): z [B,K,D], actions
        [B,fs,A], proprio [B,P] -> (next latent [B,K,D], next proprio [B,P] in the env's units,
        None for a model without proprio). What an imagined environment steps with."""
        z = self._check_latents(z, history=False)
        b = z.shape[0]
        actions = self._check_actions(actions, b, None).flatten(1)
        p = self._check_proprio(proprio, b, None)
        with self._autocast():
            z_next, p_next, _ = self._step(z.to(self.device), actions, p, 0, None)
        if p_next is not None:
            p_next = self._proprio_in_env_units(p_next)
        return z_next.float(), p_next

    def energy(self, z: Tensor, z_goal: Tensor, metric: str = "l1") -> Tensor:
        """Mean distance over tokens and channels: [B,...,K,D] vs broadcastable goal -> [B,...]
        (the planners' ``latent_distance``, with the inputs checked)."""
        z, z_goal = self._as_float(z, "latents"), self._as_float(z_goal, "goal latents")
        if z.shape[-2:] != z_goal.shape[-2:]:
            raise ValueError(
                f"latent shapes differ: {tuple(z.shape)} vs goal {tuple(z_goal.shape)}"
            )
        if z_goal.dim() >= 3 and z_goal.shape[0] not in (1, z.shape[0]):
            raise ValueError(f"goal latents must have batch size 1 or {z.shape[0]} (one per "
                             f"latent), got {z_goal.shape[0]}")
        if z_goal.dim() == 3 and z.dim() == 4:
            z_goal = z_goal.unsqueeze(1)
        return latent_distance(z, z_goal, metric)

    def _autocast(self):
        kind = self.device.type
        if self._precision == "bf16" or (self._precision == "auto" and kind == "cuda"):
            return torch.autocast(kind, dtype=torch.bfloat16)
        return torch.autocast(kind, enabled=False)

    # ------------------------------------------------------------------ persistence
    def save(self, directory: str | Path, provenance: dict[str, Any] | None = None,
             weights: str = "float32") -> Path:
        """The folder is written whole: weights, config, provenance and the attached state
        readout go to a staging folder that replaces ``directory`` once complete, so a kill or a
        full disk leaves the previous folder (or none), never weights beside another model's
        config. Whatever else the old folder held (a policy fitted on the old latents) goes with
        it. Without ``provenance``, the loaded model's own is kept, with this save recorded.

        ``weights="float16"`` halves the file (a shipped model may take 20 MB): this model's
        own weights are rounded to half precision first, so that it, its fingerprint and the
        saved folder agree; it still computes in float32."""
        from jepa_world.files import replace_folder, save_safetensors_atomic, write_json_atomic
        from jepa_world.provenance import git_commit

        if weights not in WEIGHT_DTYPES:
            raise ValueError(f"weights must be one of {', '.join(WEIGHT_DTYPES)}, got {weights!r}")
        dtype = WEIGHT_DTYPES[weights]
        if dtype != torch.float32:
            self.round_weights(dtype)
        fingerprint = self.fingerprint()
        if provenance is None:
            provenance = dict(self._loaded_from.get("provenance", {}))
            provenance["saved_by"] = {"call": "WorldModel.save", "git_commit": git_commit(),
                                      "fingerprint": fingerprint,
                                      "loaded_from": self._loaded_from.get("directory")}
        readout = self.readout
        if readout is not None and readout.config.world_model_fingerprint not in (None,
                                                                                 fingerprint):
            warnings.warn("the attached state readout was fitted on other weights of this model "
                          "and is not saved with it: refit it (python -m jepa_world.readout)",
                          stacklevel=2)
            readout = None

        def fill(staging: Path) -> None:
            state = {name: tensor.to(dtype) if tensor.is_floating_point() else tensor
                     for name, tensor in self.state_dict().items()}
            save_safetensors_atomic(state, staging / WEIGHTS)
            write_json_atomic(staging / CONFIG, asdict(self.config), sort_keys=False)
            write_json_atomic(staging / PROVENANCE, provenance, sort_keys=False)
            if readout is not None:
                readout.save(staging / READOUT_DIR)

        return replace_folder(Path(directory), fill)

    @torch.no_grad()
    def round_weights(self, dtype: torch.dtype) -> None:
        """Round every floating weight and buffer to ``dtype``'s precision in place (kept in
        their own dtype); one that ``dtype`` cannot hold is an error, and then nothing moves."""
        floating = {name: tensor for name, tensor in self.state_dict(keep_vars=True).items()
                    if tensor.is_floating_point()}
        rounded = {name: tensor.data.to(dtype) for name, tensor in floating.items()}
        for name, tensor in floating.items():
            if not torch.isfinite(rounded[name]).all() and torch.isfinite(tensor.data).all():
                raise ValueError(f"weight {name} does not fit in {dtype}: "
                                 f"max |value| {float(tensor.data.abs().max()):.3g}")
        for name, tensor in floating.items():
            tensor.data.copy_(rounded[name])

    @classmethod
    def load(cls, path_or_name: str | Path, device: str | torch.device = "cpu") -> WorldModel:
        """A model directory, or a shipped name such as "reach"."""
        directory = resolve_model_dir(path_or_name)
        data = read_config_json(directory)
        try:
            config = WorldModelConfig.from_dict(data)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"world model config {directory / CONFIG} is invalid: {exc}") from None
        try:
            model = cls(config)
        except (TypeError, ValueError, KeyError) as exc:
            text = " ".join(str(exc).split())[:200]
            raise ValueError(f"world model config {directory / CONFIG} is invalid: {text}") from None
        state = read_weights(directory)
        missing, unexpected = model.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise ValueError(
                f"weights in {directory} do not fit the config: missing {missing[:3]}, "
                f"unexpected {unexpected[:3]}"
            )
        model = model.to(device).freeze()
        if (directory / READOUT_DIR / CONFIG).is_file():
            from jepa_world.readout.model import StateReadout

            model.attach_readout(StateReadout.load(directory / READOUT_DIR, model))
        model._loaded_from = {"directory": str(directory), "provenance": model.provenance(directory)}
        return model

    def fingerprint(self) -> str:
        """A digest of the weights and config: a policy distilled on one model's latents
        records it, so that a rebuilt model whose latents mean other things refuses it (the
        stored planner settings are left out: they do not change what a latent means)."""
        config = {k: v for k, v in asdict(self.config).items() if k != "planning"}
        if config["head"] is None:  # frozen models keep the fingerprint they had before heads
            del config["head"]
        digest = hashlib.sha256(json.dumps(config, sort_keys=True).encode())
        for name, tensor in sorted(self.state_dict().items()):
            digest.update(name.encode())
            digest.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
        return digest.hexdigest()[:16]

    def provenance(self, directory: str | Path | None = None) -> dict[str, Any]:
        """What ``directory``'s provenance.json says, or (no directory) the loaded model's."""
        if directory is None:
            return dict(self._loaded_from.get("provenance", {}))
        path = resolve_model_dir(directory) / PROVENANCE
        return json.loads(path.read_text()) if path.exists() else {}


def _build_encoder(spec: dict[str, Any]) -> VisionTransformer:
    return VisionTransformer(EncoderConfig.from_dict(spec))
