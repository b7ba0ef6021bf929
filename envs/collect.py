"""Record exploration rollouts as a trajectory dataset and video corpus.

    python -m envs.collect --env reach --episodes 200 --out data/reach

Episodes are rolled out in parallel worker processes and added to ``--out``; running the command
again on the same folder appends more episodes. The on-disk format is documented in
``envs/dataset_format.py``.
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing as mp
import os
import platform
import shutil
import sys
import time
from contextlib import closing
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from envs import RenderingUnavailableError, make_task, resolve_env_id, short_name
from envs.dataset_format import (
    ARRAYS_FILE,
    EPISODES_DIR,
    FORMAT_NAME,
    FORMAT_VERSION,
    FRAMES_FILE,
    MANIFEST,
    META_FILE,
    TMP_PREFIX,
    DatasetError,
    check_episode_files,
    episode_name,
    load_manifest,
    scan_orphan_episodes,
    write_json_atomic,
)
from envs.exploration import make_exploration_policy
from envs.video_io import write_mp4
from jepa_world.text import count
from jepa_world.training.cli import CommandParser


@dataclass(frozen=True)
class CollectConfig:
    """Everything that determines the recorded data (stored in the manifest)."""

    env_id: str
    image_size: int = 64
    steps: int = 100
    policy: str = "noisy"
    smoothing: float = 0.8
    action_scale: float = 1.0


@dataclass(frozen=True)
class EpisodeJob:
    index: int
    seed: int
    root: str
    config: CollectConfig


class CollectError(ValueError):
    """Bad arguments or an unusable output folder."""


# ---------------------------------------------------------------------------- worker side
_WORKER_ENV: dict[tuple[str, int], Any] = {}


def _worker_env(config: CollectConfig):
    key = (config.env_id, config.image_size)
    if key not in _WORKER_ENV:
        _WORKER_ENV[key] = make_task(config.env_id, image_size=config.image_size)
    return _WORKER_ENV[key]


def _recording_protocol(task) -> str:
    """Goals are not recorded: pick the cheapest protocol to reset with."""
    return "uniform" if "uniform" in task.goal_protocols else task.goal_protocols[0]


def rollout(job: EpisodeJob) -> dict[str, np.ndarray]:
    """One episode of the exploration policy; deterministic given the job's seed."""
    config = job.config
    env = _worker_env(config)
    rng = np.random.default_rng(job.seed)
    low, high = env.action_space.low, env.action_space.high
    policy = make_exploration_policy(env, config.policy, config.smoothing, config.action_scale)
    policy.reset(rng)
    obs, _ = env.reset(seed=job.seed, options={"goal_protocol": _recording_protocol(env)})
    frames, proprio, states = [obs["pixels"]], [obs["proprio"]], [env.state_arrays()]
    actions, rewards = [], []
    for _ in range(config.steps):
        # The policy acts in [-1, 1]^A; the task's action box may be wider (Pusher: [-2, 2]).
        action = (low + (policy(rng) + 1.0) * 0.5 * (high - low)).astype(np.float32)
        obs, reward, _, _, _ = env.step(action)
        actions.append(action)
        rewards.append(reward)
        frames.append(obs["pixels"])
        proprio.append(obs["proprio"])
        states.append(env.state_arrays())
    arrays = {
        "frames": np.stack(frames),
        "actions": np.asarray(actions, np.float32),
        "proprio": np.asarray(proprio, np.float32),
        "rewards": np.asarray(rewards, np.float32),
    }
    for key in env.state_keys:
        arrays[key] = np.stack([state[key] for state in states])
    return arrays


def record_episode(job: EpisodeJob) -> dict[str, Any]:
    """Roll out and write one episode; the folder appears only once it is complete."""
    data = rollout(job)
    stats = _worker_env(job.config).episode_stats(data)
    name = episode_name(job.index)
    episodes = Path(job.root) / EPISODES_DIR
    tmp = episodes / f"{TMP_PREFIX}{name}-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    fps = 1.0 / _worker_env(job.config).dt
    write_mp4(tmp / FRAMES_FILE, data.pop("frames"), fps=fps, lossless=True)
    with open(tmp / ARRAYS_FILE, "wb") as handle:
        np.savez(handle, **data)
        handle.flush()
        os.fsync(handle.fileno())
    meta = {
        "name": name,
        "index": job.index,
        "seed": job.seed,
        "length": int(len(data["actions"])),
        "policy": job.config.policy,
        "stats": stats,
        "fps": fps,
        "files": {f: (tmp / f).stat().st_size for f in (FRAMES_FILE, ARRAYS_FILE)},
    }
    write_json_atomic(tmp / META_FILE, meta)
    os.replace(tmp, episodes / name)
    return meta


# ---------------------------------------------------------------------------- main side
def software_versions() -> dict[str, str]:
    import gymnasium
    import imageio_ffmpeg
    import mujoco

    try:
        package = metadata.version("jepa-world")
    except metadata.PackageNotFoundError:
        package = "unknown"
    return {
        "jepa_world": package,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "mujoco": mujoco.__version__,
        "gymnasium": gymnasium.__version__,
        "imageio_ffmpeg": imageio_ffmpeg.__version__,
    }


def _prepare_output(root: Path) -> None:
    try:
        (root / EPISODES_DIR).mkdir(parents=True, exist_ok=True)
        probe = root / f"{TMP_PREFIX}write-probe-{os.getpid()}"
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as exc:
        raise CollectError(f"cannot write to output folder {root}: {exc.strerror or exc}") from None


def _remove_stale_tmp(root: Path) -> None:
    """Half-written episodes from a killed run: never listed, safe to delete under the lock."""
    from jepa_world.files import remove_stale_tmp

    for path in (root / EPISODES_DIR).glob(f"{TMP_PREFIX}*"):
        shutil.rmtree(path, ignore_errors=True)
    remove_stale_tmp(root)


def _open_or_create_manifest(root: Path, config: CollectConfig) -> dict[str, Any]:
    if not (root / MANIFEST).exists():
        if any((root / EPISODES_DIR).iterdir()):
            raise DatasetError(f"{root} holds episodes but no {MANIFEST} (not a dataset of this "
                               "version's recorder): move the episodes away or use another --out")
        now = datetime.now(timezone.utc).isoformat(timespec="seconds")
        task = _worker_env(config)
        return {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "env_id": config.env_id,
            "env": short_name(config.env_id),
            "image_size": config.image_size,
            "action_dim": int(task.action_space.shape[0]),
            "proprio_dim": int(task.observation_space["proprio"].shape[0]),
            "state_keys": list(task.state_keys),
            "probe_targets": list(task.probe_targets),
            "fps": None,
            "created": now,
            "episodes": [],
            "collect": [],
        }
    manifest = load_manifest(root)
    for key in ("env_id", "image_size"):
        if manifest.get(key) != getattr(config, key):
            raise DatasetError(
                f"{root} was recorded with {key}={manifest.get(key)!r}; "
                f"cannot append episodes with {key}={getattr(config, key)!r}"
            )
    for entry in manifest["episodes"]:
        check_episode_files(root, entry)
    orphans = scan_orphan_episodes(root, {e["name"] for e in manifest["episodes"]})
    for entry in orphans:
        check_episode_files(root, entry)
    manifest["episodes"] = sorted(manifest["episodes"] + orphans, key=lambda e: e["index"])
    return manifest


@contextlib.contextmanager
def _exclusive(root: Path):
    """One writer per dataset folder at a time."""
    from jepa_world.files import FolderInUseError, exclusive

    try:
        with exclusive(root, "another envs.collect"):
            yield
    except FolderInUseError as exc:
        raise CollectError(str(exc)) from None


def collect(
    env: str,
    episodes: int,
    out: str | Path,
    *,
    steps: int = 100,
    image_size: int = 64,
    policy: str = "noisy",
    smoothing: float = 0.8,
    action_scale: float = 1.0,
    workers: int = 1,
    seed: int = 0,
    progress: bool = True,
) -> dict[str, Any]:
    """Append ``episodes`` rollouts to the dataset at ``out``; returns a summary dict."""
    if episodes <= 0:
        raise CollectError(f"--episodes must be positive, got {episodes}")
    if steps <= 0:
        raise CollectError(f"--steps must be positive, got {steps}")
    if seed < 0:
        raise CollectError(f"--seed must be non-negative, got {seed}")
    if workers <= 0:
        raise CollectError(f"--workers must be positive, got {workers}")
    config = CollectConfig(resolve_env_id(env), image_size, steps, policy, smoothing, action_scale)
    with closing(make_task(config.env_id, image_size=image_size)) as task:
        make_exploration_policy(task, policy, smoothing, action_scale)  # checks them early
    root = Path(out).expanduser().resolve()
    if root.exists() and not root.is_dir():
        raise CollectError(f"cannot write to output folder {root}: it is a file")
    _prepare_output(root)
    with _exclusive(root):
        _remove_stale_tmp(root)
        manifest = _open_or_create_manifest(root, config)
        start = 1 + max((e["index"] for e in manifest["episodes"]), default=-1)
        used_seeds = {e["seed"] for e in manifest["episodes"]}
        jobs = [EpisodeJob(i, seed + i, str(root), config) for i in range(start, start + episodes)]
        clash = sorted(used_seeds & {job.seed for job in jobs})
        if clash:
            raise CollectError(
                f"seeds {clash[:5]} are already recorded in {root}; pick another --seed"
            )
        manifest.setdefault("collect", []).append(
            {
                "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "first_index": start,
                "episodes": episodes,
                "seed": seed,
                **asdict(config),
            }
        )
        manifest["software"] = software_versions()
        # Written before the first episode: a run killed at any moment leaves a dataset whose
        # finished episodes the next run adopts (they are renamed into place only when complete).
        write_json_atomic(root / MANIFEST, manifest)
        return _run_jobs(root, manifest, jobs, workers, progress)


def _run_jobs(root, manifest, jobs, workers, progress) -> dict[str, Any]:
    from tqdm import tqdm

    frames, started, stats = 0, time.perf_counter(), []
    bar = tqdm(total=len(jobs), desc="recording", unit="ep", disable=not progress)
    pool = None
    try:
        if workers == 1:
            results = map(record_episode, jobs)
        else:
            pool = mp.get_context("spawn").Pool(min(workers, len(jobs)))
            results = pool.imap_unordered(record_episode, jobs)
        for meta in results:
            manifest["episodes"].append(meta)
            manifest["episodes"].sort(key=lambda e: e["index"])
            manifest["fps"] = meta["fps"]
            manifest["updated"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
            write_json_atomic(root / MANIFEST, manifest)
            frames += meta["length"] + 1
            stats.append(meta.get("stats") or {})
            bar.update(1)
            bar.set_postfix(frames_per_s=f"{frames / (time.perf_counter() - started):.0f}")
    finally:
        bar.close()
        if pool is not None:
            pool.terminate()
            pool.join()
        _remove_stale_tmp(root)
    elapsed = time.perf_counter() - started
    return {
        "out": str(root),
        "recorded": len(jobs),
        "frames": frames,
        "seconds": elapsed,
        "frames_per_s": frames / max(elapsed, 1e-9),
        "total_episodes": len(manifest["episodes"]),
        "stats": {
            key: float(np.mean([s[key] for s in stats if key in s]))
            for key in sorted({key for s in stats for key in s})
        },
    }


def build_parser() -> argparse.ArgumentParser:
    parser = CommandParser(
        prog="python -m envs.collect", description="Record exploration episodes to a dataset.",
        epilog="docs: docs/recording.md",
    )
    parser.add_argument("--env", required=True, help="task name, e.g. reach or gym:Reacher-v5")
    parser.add_argument("--episodes", type=int, required=True, help="episodes to add")
    parser.add_argument("--out", required=True, help="dataset folder (created or appended to)")
    parser.add_argument("--steps", type=int, default=100, help="actions per episode")
    parser.add_argument("--image-size", type=int, default=64, help="square frame size in pixels")
    parser.add_argument(
        "--policy", default="noisy",
        help="exploration policy: random, noisy or one of the task's own (gym:Pusher-v5: push)",
    )
    parser.add_argument("--smoothing", type=float, default=0.8, help="noisy policy: AR(1) factor")
    parser.add_argument("--action-scale", type=float, default=1.0, help="scale of actions")
    parser.add_argument(
        "--workers", type=int, default=min(2, os.cpu_count() or 1), help="worker processes"
    )
    parser.add_argument("--seed", type=int, default=0, help="episode i uses seed + i")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        summary = collect(
            args.env,
            args.episodes,
            args.out,
            steps=args.steps,
            image_size=args.image_size,
            policy=args.policy,
            smoothing=args.smoothing,
            action_scale=args.action_scale,
            workers=args.workers,
            seed=args.seed,
            progress=not args.quiet,
        )
    except (ValueError, RenderingUnavailableError) as exc:
        # CollectError, DatasetError, UnknownEnvError and the env's own checks (image size)
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"interrupted: completed episodes are kept in {args.out}", file=sys.stderr)
        return 130
    except OSError as exc:  # a full disk: the episodes recorded so far and the manifest are whole
        from jepa_world.files import describe_os_error

        print(f"error: {describe_os_error(exc)}; completed episodes are kept in {args.out}",
              file=sys.stderr)
        return 1
    print(
        f"recorded {count(summary['recorded'], 'episode')} ({summary['frames']} frames) in "
        f"{summary['seconds']:.1f} s ({summary['frames_per_s']:.0f} frames/s); "
        f"{summary['out']} now holds {count(summary['total_episodes'], 'episode')}"
    )
    for key, value in summary["stats"].items():
        print(f"{key.replace('_', ' ')}: {value:.3f} (mean over the episodes recorded now)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
