"""python -m jepa_world.distill: the planner distilled into a small goal-conditioned policy.

DAgger (Ross et al. 2011) with the planner as the expert: round 0 records the planner acting
(every executed action is a label); in every later round the student acts and, every
``label_every`` steps, the planner says what it would do in the state the student reached.
After each round the student (``jepa_world.rl.student``) is trained on all labels so far.
Each round is saved atomically with its labels, so a killed run resumes at the next round.
The student reads what the planner reads: the encoded frame, proprioception and the encoded
goal image, never the simulator's state or the success signal; the success printed per round
is the task's judgement of the student's own training episodes (seeds
``TRAIN_SEED_BASE + ...``, disjoint from the recording and evaluation seeds).
"""

from __future__ import annotations

import json
import shutil
import sys
import time
import zipfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from jepa_world.files import TMP_PREFIX, atomic_open, replace_folder, swap_folder, write_json_atomic
from jepa_world.schemas.distill import DistillConfig
from jepa_world.training.cli import UserError, load_config, run_command, typed_config
from jepa_world.training.loop import optimiser_step
from jepa_world.training.run_dir import hold_out_dir
from jepa_world.training.runtime import NonFiniteLossError, Runtime
from jepa_world.world_model import SHIPPED, resolve_model_dir

TRAIN_SEED_BASE = 10**12  # far above recording seeds (0, 1, ...) and eval seeds (1_000_000 + ...)
LABELS, STATE = "labels.npz", "state.json"
RESUMABLE = ("rounds", "progress", "out_dir", "install")  # may change when a run is resumed (or moved)
POLICY = "policy"
PENDING, PENDING_ROUND = f"{TMP_PREFIX}pending-{POLICY}", "round.json"  # a round not yet committed


def train_seed(seed: int, round_index: int, episode: int) -> int:
    return TRAIN_SEED_BASE + seed * 10**6 + round_index * 10**4 + episode


def open_world_model(cfg: DistillConfig) -> tuple[Any, str]:
    import envs
    from jepa_world.world_model import shipped_names
    from planners.mpc import load_world_model

    name = cfg.world_model
    if name is None:
        try:
            name = envs.short_name(cfg.env)
        except envs.UnknownEnvError as exc:
            raise UserError(str(exc)) from None
        if name not in shipped_names():
            raise UserError(f"no shipped world model for {name}: pass world_model=DIR")
    model = load_world_model(str(name), torch.device("cpu"))
    if str(name) not in shipped_names():  # the policy finds its model from any folder
        name = str(Path(name).expanduser().resolve())
    return model, str(name)


def with_later_settings(recorded: dict[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
    """A run's recorded settings with the settings added to the schema since, at their
    defaults (what the run did without them), so that it still resumes."""
    merged = dict(recorded)
    for key, value in defaults.items():
        if key not in merged:
            merged[key] = value
        elif isinstance(value, dict) and isinstance(merged[key], dict):
            merged[key] = with_later_settings(merged[key], value)
    return merged


def make_tasks(cfg: DistillConfig, model: Any) -> list[Any]:
    from planners.mpc import open_tasks

    tasks = open_tasks(cfg.env, cfg.num_envs, model.image_size, cfg.budget, cfg.goal)
    if int(tasks[0].action_space.shape[0]) != int(model.action_dim):
        raise UserError(f"the world model acts in {model.action_dim} dims but {cfg.env} needs "
                        f"{tasks[0].action_space.shape[0]}")
    return tasks


class Labels:
    """Every (observation, planner action) pair so far, with the round that made it."""

    def __init__(self) -> None:
        self.obs: list[np.ndarray] = []
        self.actions: list[np.ndarray] = []
        self.rounds: list[np.ndarray] = []

    def add(self, obs: np.ndarray, actions: np.ndarray, round_index: int) -> None:
        self.obs.append(obs.astype(np.float32))
        self.actions.append(actions.astype(np.float32))
        self.rounds.append(np.full(len(obs), round_index, np.int32))

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        return np.concatenate(self.obs), np.concatenate(self.actions)

    def __len__(self) -> int:
        return int(sum(len(o) for o in self.obs))

    def before_round(self, round_index: int) -> Labels:
        """The labels of the rounds before ``round_index`` (those a committed state counts)."""
        rounds = np.concatenate(self.rounds)
        keep = rounds < round_index
        kept = Labels()
        kept.obs = [np.concatenate(self.obs)[keep]]
        kept.actions = [np.concatenate(self.actions)[keep]]
        kept.rounds = [rounds[keep]]
        return kept

    def save(self, path: Path) -> None:
        obs, actions = self.arrays()
        with atomic_open(path, "wb") as handle:
            np.savez(handle, obs=obs, actions=actions, rounds=np.concatenate(self.rounds))

    @classmethod
    def load(cls, path: Path) -> Labels:
        labels = cls()
        try:
            with np.load(path) as data:
                labels.obs, labels.actions = [data["obs"]], [data["actions"]]
                labels.rounds = [data["rounds"]]
        except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile) as exc:
            raise UserError(f"cannot read the labels {path} ({type(exc).__name__}: "
                            f"{' '.join(str(exc).split())[:120]}): use another out_dir") from None
        return labels


def run_round(cfg: DistillConfig, round_index: int, tasks: list[Any], planner: Any,
              student: Any, labels: Labels, progress: Any) -> dict[str, float]:
    """Episodes of one round; returns the actor's success at the end and at any step."""
    from jepa_world.rl.observations import encode_pixels

    layout, model = student.layout, student.world_model
    label_every = cfg.label_every or int(model.frameskip)
    goal = cfg.goal or tasks[0].goal_protocol
    ends, anys = [], []
    for first in range(0, cfg.episodes_per_round, len(tasks)):
        count = min(len(tasks), cfg.episodes_per_round - first)
        seeds = [train_seed(cfg.seed, round_index, first + e) for e in range(count)]
        resets = [t.reset(seed=s, options={"goal_protocol": goal})
                  for t, s in zip(tasks, seeds, strict=False)]
        obs = [r[0] for r in resets]
        goal_latent = encode_pixels(model, np.stack([r[1]["goal_pixels"] for r in resets]))
        planner.bind(None, None, seeds)
        hit = np.zeros(count, bool)
        for step in range(cfg.budget):
            latent = encode_pixels(model, np.stack([o["pixels"] for o in obs]))
            proprio = np.stack([o["proprio"] for o in obs]) if layout.proprio_dim else None
            flat = layout.join(latent, proprio, goal_latent)
            if round_index == 0:  # the expert acts: every executed action is a label
                actions, _ = planner.predict(flat, episode_start=np.full(count, step == 0))
                labels.add(flat, actions, round_index)
            else:
                if step % label_every == 0:
                    expert = planner.replan(flat, episode_start=np.full(count, step == 0))
                    labels.add(flat, expert[:, 0], round_index)
                actions, _ = student.predict(flat)
            for e in range(count):
                obs[e], _, _, _, info = tasks[e].step(np.asarray(actions[e], np.float32))
                hit[e] = hit[e] or bool(info["is_success"])
                if step == cfg.budget - 1:
                    ends.append(bool(info["is_success"]))
            progress.update(count)
        anys.extend(hit.tolist())
    return {"success_rate": float(np.mean(ends)), "success_any_rate": float(np.mean(anys))}


def fit_student(cfg: DistillConfig, student: Any, labels: Labels, seed: int) -> float:
    """Train on every label so far (inputs standardised with their statistics); returns the
    last epoch's mean squared error."""
    obs, actions = labels.arrays()
    net = student.net
    x, y = torch.from_numpy(obs), torch.from_numpy(actions)
    net.input_mean.copy_(x.mean(0))
    net.input_std.copy_(x.std(0) + 1e-4)
    generator = torch.Generator().manual_seed(seed)
    optim = torch.optim.AdamW(net.mlp.parameters(), lr=cfg.train.lr,
                              weight_decay=cfg.train.weight_decay)
    net.train()
    loss_value = float("nan")
    runtime = Runtime(torch.device("cpu"))
    for epoch in range(cfg.train.epochs):
        order = torch.randperm(len(x), generator=generator)
        total = 0.0
        for start in range(0, len(x), cfg.train.batch_size):
            index = order[start:start + cfg.train.batch_size]
            loss = torch.nn.functional.mse_loss(net(x[index]), y[index])
            try:
                value, _ = optimiser_step(runtime, optim, loss, (), None,
                                          f"epoch {epoch}, label {start}")
            except NonFiniteLossError as exc:  # checked before the weights move
                raise UserError(f"the student's {exc}: lower train.lr (the rounds before "
                                "are kept)") from None
            total += value * len(index)
        loss_value = total / len(x)
    net.eval()
    return loss_value


def distill(cfg: DistillConfig) -> dict[str, Any]:
    """Run (or resume) the distillation that ``cfg`` describes; returns the summary."""

    from jepa_world.rl.student import StudentConfig, StudentPolicy
    from planners.policies import PlannerPolicy

    torch.manual_seed(cfg.seed)
    out = Path(cfg.out_dir).expanduser()
    if out.exists() and not out.is_dir():
        raise UserError(f"out_dir {out} is a file")
    model, model_name = open_world_model(cfg)
    if cfg.install and model_name not in SHIPPED:
        raise UserError("install=true puts the policy beside a shipped world model: leave "
                        f"world_model unset or name one of {', '.join(SHIPPED)}")
    tasks = make_tasks(cfg, model)
    low, high = tasks[0].action_space.low, tasks[0].action_space.high
    try:
        planner = PlannerPolicy(model, cfg.planner, budget=cfg.budget, seed=cfg.seed,
                                action_low=float(low.min()), action_high=float(high.max()),
                                **dict(cfg.planner_settings))
    except (TypeError, ValueError) as exc:
        raise UserError(f"bad planner settings: {exc}") from None
    tokens, width = model.latent_shape
    proprio_dim = int(tasks[0].observation_space["proprio"].shape[0])
    if cfg.imagination.data and not model.proprio_dim:
        proprio_dim = 0  # imagination has only what the model predicts
    student_cfg = StudentConfig(
        world_model=model_name, tokens=tokens, width=width, proprio_dim=proprio_dim,
        action_dim=model.action_dim, frameskip=model.frameskip, hidden=cfg.student.hidden,
        depth=cfg.student.depth, action_low=float(low.min()), action_high=float(high.max()),
        world_model_fingerprint=model.fingerprint(),
    )
    student = StudentPolicy(student_cfg, model)
    out.mkdir(parents=True, exist_ok=True)
    with hold_out_dir(out, True, "another jepa_world.distill run"):
        history, imagined, labels, student = _resume_or_start(cfg, out, student, planner, model)
        _run_rounds(cfg, out, tasks, planner, student, labels, history, imagined)
    summary = {"out_dir": str(out), "policy": str(out / POLICY), "rounds": history,
               "imagination": imagined}
    if cfg.install:
        summary["installed"] = str(install_student(student, model_name, asdict(cfg), summary))
        summary["installed_as"] = model_name
    return summary


def read_state(out: Path, settings: dict[str, Any]) -> dict[str, Any] | None:
    """The committed state of a distillation in ``out`` (None for a fresh run), refused in one
    line when it is damaged or was made with other settings."""
    path = out / STATE
    if not path.exists():
        return None
    try:
        state = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{path} is corrupt ({exc}): use another out_dir") from None
    if (not isinstance(state, dict) or not isinstance(state.get("config"), dict)
            or not isinstance(state.get("rounds"), list)):
        raise UserError(f"{path} is not a distillation state (no config or rounds): use "
                        "another out_dir")
    recorded = with_later_settings(state["config"], asdict(DistillConfig()))
    changed = sorted(k for k in settings if k not in RESUMABLE and recorded.get(k) != settings[k])
    if changed:
        raise UserError(f"{out} holds a distillation with other settings ({', '.join(changed)}):"
                        " use another out_dir")
    return state


def _resume_or_start(cfg: DistillConfig, out: Path, student: Any, planner: Any, model: Any
                     ) -> tuple[list, list, Labels, Any]:
    """(rounds so far, imagination history, labels, student) after the last committed step.
    ``state.json`` is the commit point: it is written before the imagination stage (so that
    a resumed stage is checked against its settings) and after each round."""
    from jepa_world.rl.student import StudentPolicy

    settings = asdict(cfg)
    state = read_state(out, settings)
    if state is None:
        write_json_atomic(out / STATE, {"config": settings, "rounds": [], "imagination": None})
        state = {"rounds": [], "imagination": None}
    history = state["rounds"]
    done = len(history)
    settle_pending_policy(out, done)
    imagined = state.get("imagination")
    if imagined is None and cfg.imagination.data:
        imagined = imagine(cfg, student, planner, out)
        student.save(out / POLICY)
        write_json_atomic(out / STATE, {"config": settings, "rounds": [],
                                        "imagination": imagined})
    elif done or imagined:
        try:
            student = StudentPolicy.load(out / POLICY, model)
        except (FileNotFoundError, ValueError) as exc:
            raise UserError(f"cannot resume {out}: {' '.join(str(exc).split())}") from None
        print(f"resuming {out} after {f'round {done - 1}' if done else 'imagination'}",
              file=sys.stderr)
    labels = Labels.load(out / LABELS).before_round(done) if done else Labels()
    return history, imagined or [], labels, student


def _run_rounds(cfg: DistillConfig, out: Path, tasks: list[Any], planner: Any, student: Any,
                labels: Labels, history: list, imagined: list) -> None:
    """The remaining rounds, each committed as one unit: the policy goes to a pending folder,
    the labels (tagged with their round) are saved, ``state.json`` records the round, and only
    then does the pending policy replace the last one."""
    from tqdm import tqdm

    settings, done = asdict(cfg), len(history)
    progress = tqdm(total=(cfg.rounds - done) * cfg.episodes_per_round * cfg.budget,
                    desc="distill", unit="step", disable=not cfg.progress, file=sys.stderr)
    try:
        for round_index in range(done, cfg.rounds):
            started = time.perf_counter()
            result = run_round(cfg, round_index, tasks, planner, student, labels, progress)
            loss = fit_student(cfg, student, labels, cfg.seed + round_index)
            result.update(round=round_index, actor="planner" if round_index == 0 else "student",
                          labels=len(labels), loss=loss,
                          seconds=round(time.perf_counter() - started, 1))
            replace_folder(out / PENDING, lambda staging, r=round_index: _pending(student,
                                                                               staging, r))
            labels.save(out / LABELS)
            write_json_atomic(out / STATE, {"config": settings, "rounds": [*history, result],
                                            "imagination": imagined})
            history.append(result)
            settle_pending_policy(out, len(history))
            tqdm.write(f"round {round_index} ({result['actor']} acting): success "
                       f"{100 * result['success_rate']:.0f} % at the end, "
                       f"{100 * result['success_any_rate']:.0f} % at any step; "
                       f"{result['labels']} labels, student mse {loss:.4f}", file=sys.stderr)
    finally:
        progress.close()
        for task in tasks:
            task.close()


def _pending(student: Any, staging: Path, round_index: int) -> None:
    student.save(staging)
    write_json_atomic(staging / PENDING_ROUND, {"round": round_index})


def settle_pending_policy(out: Path, done: int) -> None:
    """A pending policy of a committed round (``round < done``) replaces the policy; one of a
    round that was never committed (killed before ``state.json``) is dropped."""
    pending = out / PENDING
    if not pending.is_dir():
        return
    try:
        round_index = int(json.loads((pending / PENDING_ROUND).read_text())["round"])
    except (OSError, ValueError, KeyError, TypeError):
        round_index = done  # unreadable: never committed
    if round_index >= done:
        shutil.rmtree(pending)
        return
    (pending / PENDING_ROUND).unlink()
    swap_folder(pending, out / POLICY)


def install_student(student: Any, model_name: str, settings: dict[str, Any],
                    summary: dict[str, Any]) -> Path:
    """The policy, with where it came from, next to the shipped world model it reads."""
    from jepa_world.provenance import git_commit
    from jepa_world.rl.student import STUDENT_DIR

    fingerprint = student.world_model.fingerprint()
    recorded = student.config.world_model_fingerprint
    if recorded is not None and recorded != fingerprint:
        raise UserError(f"the policy was distilled on another {model_name} model (fingerprint "
                        f"{recorded}, installed {fingerprint}): distil it again")
    student.config.world_model_fingerprint = fingerprint
    provenance = {"git_commit": git_commit(), "distill_config": settings,
                  "imagination": summary["imagination"], "rounds": summary["rounds"]}

    def fill(staging: Path) -> None:
        student.save(staging)
        write_json_atomic(staging / "provenance.json", provenance, sort_keys=False)

    return replace_folder(resolve_model_dir(model_name) / STUDENT_DIR, fill)


def imagine(cfg: DistillConfig, student: Any, planner: Any, out: Path) -> list[dict[str, float]]:
    """The imagination stage (``jepa_world.rl.amortized``), resumable from its checkpoint."""
    import dataclasses

    from tqdm import tqdm

    from envs.dataset_format import DatasetError
    from jepa_world.rl.amortized import RecordedFrames, train_in_imagination
    from jepa_world.rl.imagined import ImaginedStarts

    stage, model = cfg.imagination, student.world_model
    objective = planner.settings
    if objective.step_weights is not None and len(objective.step_weights) != stage.horizon:
        raise UserError(f"the planner's step_weights have {len(objective.step_weights)} values: "
                        f"set imagination.horizon={len(objective.step_weights)}")
    objective = dataclasses.replace(objective, horizon=stage.horizon)
    try:
        starts = ImaginedStarts(model, list(stage.data), stage.episodes)
    except (DatasetError, ValueError, FileNotFoundError) as exc:
        raise UserError(f"imagination.data: {exc}") from None
    frames = RecordedFrames(starts, model.frameskip, proprio=student.layout.proprio_dim > 0)
    mean, std = frames.input_statistics()
    student.net.input_mean.copy_(mean)
    student.net.input_std.copy_(std)
    bar = tqdm(total=stage.steps, desc="imagination", unit="step", disable=not cfg.progress,
               file=sys.stderr)

    def report(step: int, energy: float) -> None:
        bar.n = step
        bar.set_postfix(energy=f"{energy:.4f}", refresh=False)
        bar.refresh()

    try:
        history = train_in_imagination(student.net, model, frames, stage, objective, cfg.seed,
                                       out / "imagination.pt", report)
    except FloatingPointError as exc:
        raise UserError(str(exc)) from None
    finally:
        bar.close()
    what = "the planner's energy" if stage.loss == "energy" else f"the {stage.loss} loss"
    tqdm.write(f"imagination: {stage.steps} steps, {what} "
               f"{history[0]['energy']:.4f} -> {history[-1]['energy']:.4f}", file=sys.stderr)
    return history


def main(argv: list[str]) -> int:
    cfg = typed_config(DistillConfig, load_config("distill", argv))
    summary = distill(cfg)
    print(f"distilled policy: {summary['policy']}")
    if "installed" in summary:
        name = summary["installed_as"]
        print(f"installed into {summary['installed']} (tail={name}, --policy {name})")
    print(f"evaluate: python -m planners.mpc --env {cfg.env} --policy {summary['policy']}")
    return 0


if __name__ == "__main__":
    run_command(main, interrupted="the rounds committed so far are kept")
