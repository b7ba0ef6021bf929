"""Scoring candidate sequences on several CPU cores: one Python thread per core, each running
the world model single-threaded on its share of the sequences.

A planner's batches are small (a few hundred sequences of a few dozen tokens), and torch's
intra-op threads split every small operation and wait for each other after it: on two cores a
replanning step runs only about 1.3x faster with two intra-op threads than with one. The
sequences are independent, so handing each core whole chunks of them (torch releases the GIL
inside its kernels) keeps both busy without a barrier per operation (benchmarks/RESULTS.md,
issue 15).

While the chunks run, the process's intra-op thread count is 1 (torch's setting is global)
and is restored afterwards; worker threads inherit the caller's grad / inference mode.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import TypeVar

import torch

T = TypeVar("T")

_pools: dict[int, ThreadPoolExecutor] = {}
_lock = threading.Lock()


def cpu_workers(setting: int) -> int:
    """Threads to score with: 0 = torch's intra-op thread count, else as given."""
    workers = int(setting)
    if workers < 0:
        raise ValueError(f"scoring workers must be 0 (auto) or a positive integer, got {setting}")
    return workers or max(1, torch.get_num_threads())


def _pool(workers: int) -> ThreadPoolExecutor:
    with _lock:
        if workers not in _pools:
            _pools[workers] = ThreadPoolExecutor(workers - 1, thread_name_prefix="jepa-score")
        return _pools[workers]


def run_parallel(jobs: Sequence[Callable[[], T]], workers: int) -> list[T]:
    """Run ``jobs`` on ``workers`` threads (the caller is one of them; thread ``w`` runs jobs
    ``w, w + workers, ...`` in turn), each with one intra-op thread; results in the jobs'
    order."""
    workers = min(workers, len(jobs))
    if workers <= 1:
        return [job() for job in jobs]
    grad, inference = torch.is_grad_enabled(), torch.is_inference_mode_enabled()

    def share(first: int) -> list[T]:
        with torch.inference_mode(inference), torch.set_grad_enabled(grad):
            return [job() for job in jobs[first::workers]]

    with one_intra_op_thread(torch.device("cpu")):
        futures = [_pool(workers).submit(share, w) for w in range(1, workers)]
        shares = [share(0), *(future.result() for future in futures)]
    results: list[T] = [None] * len(jobs)  # type: ignore[list-item]
    for w, done in enumerate(shares):
        results[w::workers] = done
    return results


@contextmanager
def one_intra_op_thread(device: torch.device) -> Iterator[None]:
    """On a CPU, run the block with one intra-op thread (torch's count restored afterwards):
    the scoring threads' chunks, and the gradient passes of the polish and the gradient
    planner, a few rows each and too small to split (after the scoring threads have run,
    two intra-op threads waiting for each other after every operation made a
    one-environment polish step twice as slow: benchmarks/RESULTS.md)."""
    if device.type != "cpu":
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
