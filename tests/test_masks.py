"""Multiblock 3D mask sampler: disjointness, coverage, termination, determinism, ratios."""

from __future__ import annotations

import pytest
import torch

from jepa_world.masks import DEFAULT_MASKS, MaskSpec, MultiBlockMaskSampler

GRID = (8, 14, 14)  # 16 frames x 224 px with tubelet 2 and patch 16
N = 8 * 14 * 14


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_default_specs_are_vjepa():
    short, long = DEFAULT_MASKS
    assert (short.num_blocks, short.spatial_scale) == (8, (0.15, 0.15))
    assert (long.num_blocks, long.spatial_scale) == (2, (0.7, 0.7))
    for spec in DEFAULT_MASKS:
        assert spec.temporal_scale == (1.0, 1.0) and spec.aspect_ratio == (0.75, 1.5)


def test_shapes_disjoint_sorted():
    sampler = MultiBlockMaskSampler(GRID)
    out = sampler(6, gen())
    assert len(out) == len(DEFAULT_MASKS)
    for ctx, tgt in out:
        assert ctx.dtype == torch.long and tgt.dtype == torch.long
        assert ctx.shape[0] == tgt.shape[0] == 6
        assert ctx.shape[1] >= 1 and tgt.shape[1] >= 1
        assert ctx.shape[1] + tgt.shape[1] <= N
        for c, t in zip(ctx, tgt, strict=True):
            assert torch.all(c[1:] > c[:-1]) and torch.all(t[1:] > t[:-1])  # sorted, unique
            assert c.min() >= 0 and t.max() < N
            assert not set(c.tolist()) & set(t.tolist())


def test_single_sample_partitions_clip_into_full_time_blocks():
    """Batch of one: nothing is trimmed, context + target is every token, and with temporal
    scale 1 every masked spatial position is masked in every time step."""
    sampler = MultiBlockMaskSampler(GRID)
    for seed in range(5):
        for ctx, tgt in sampler(1, gen(seed)):
            assert sorted(ctx[0].tolist() + tgt[0].tolist()) == list(range(N))
            mask = torch.zeros(N, dtype=torch.bool)
            mask[tgt[0]] = True
            mask = mask.reshape(GRID)
            assert torch.equal(mask, mask[:1].expand_as(mask))


def test_block_size_shared_across_batch():
    """One block per sample: every sample's target is a box of the same size."""
    sampler = MultiBlockMaskSampler((4, 10, 10), [MaskSpec(1, (0.2, 0.5), (0.5, 1.0))])
    for seed in range(5):
        ((ctx, tgt),) = sampler(8, gen(seed))
        boxes = set()
        for t in tgt:
            ti, rem = t // 100, t % 100
            hi, wi = rem // 10, rem % 10
            shape = tuple(int(a.max() - a.min() + 1) for a in (ti, hi, wi))
            assert shape[0] * shape[1] * shape[2] == t.numel()  # a solid box
            boxes.add(shape)
        assert len(boxes) == 1
        assert ctx.shape[1] == 400 - tgt.shape[1]


def test_trims_to_batch_minimum():
    """Rows are cut to the smallest per-sample count, keeping each row's lowest indices."""

    class Fixed(MultiBlockMaskSampler):
        def _sample_spec(self, spec, batch_size, generator):
            unions = [torch.zeros(8, dtype=torch.bool) for _ in range(2)]
            unions[0][[1, 2, 5]] = True  # target 3, context 5
            unions[1][[0, 3, 4, 6, 7]] = True  # target 5, context 3
            return unions

    ((ctx, tgt),) = Fixed((2, 2, 2), [MaskSpec(1, (0.5, 0.5))])(2)
    assert ctx.tolist() == [[0, 3, 4], [1, 2, 5]]
    assert tgt.tolist() == [[1, 2, 5], [0, 3, 4]]


@pytest.mark.parametrize(
    "grid,spec",
    [
        ((2, 4, 4), MaskSpec(4, (1.0, 1.0))),  # every block is the whole clip
        ((1, 1, 2), MaskSpec(5, (1.0, 1.0))),  # more blocks than tokens
        ((4, 3, 3), MaskSpec(20, (0.5, 0.9), (0.5, 1.0), (0.5, 2.0))),
    ],
)
def test_never_empty_context_and_terminates(grid, spec):
    sampler = MultiBlockMaskSampler(grid, [spec])
    n = grid[0] * grid[1] * grid[2]
    for seed in range(3):
        ((ctx, tgt),) = sampler(4, gen(seed))
        assert ctx.shape[1] >= 1 and tgt.shape[1] >= 1
        for c, t in zip(ctx, tgt, strict=True):
            assert not set(c.tolist()) & set(t.tolist())
            assert c.max() < n and t.max() < n


def test_deterministic_given_generator():
    sampler = MultiBlockMaskSampler(GRID)
    a, b, c = sampler(4, gen(7)), sampler(4, gen(7)), sampler(4, gen(8))
    for (ca, ta), (cb, tb) in zip(a, b, strict=True):
        assert torch.equal(ca, cb) and torch.equal(ta, tb)
    assert any(not torch.equal(ta, tc) for (_, ta), (_, tc) in zip(a, c, strict=True))


def test_masking_ratio_matches_vjepa():
    """V-JEPA reports ~90% of tokens hidden from the encoder; with its per-batch trimming
    (24 clips per GPU) the long-range masks hide ~94% and the short-range ~77%."""
    sampler = MultiBlockMaskSampler(GRID)
    g = gen(0)
    hidden = torch.tensor([[1 - ctx.shape[1] / N for ctx, _ in sampler(24, g)] for _ in range(20)])
    short, long = hidden.mean(0).tolist()
    assert 0.70 < short < 0.85
    assert 0.88 < long < 0.98
    assert 0.80 < hidden.mean().item() < 0.92
    # per sample (no trimming) the union of blocks covers ~63% / ~82% of the clip
    single = torch.tensor([[t.shape[1] / N for _, t in sampler(1, g)] for _ in range(100)])
    s_short, s_long = single.mean(0).tolist()
    assert 0.55 < s_short < 0.72 and 0.75 < s_long < 0.9


def test_spec_validation():
    spec = MaskSpec(2, [0.1, 0.2], [1.0, 1.0], [0.5, 2.0])  # lists, as Hydra passes them
    assert spec.spatial_scale == (0.1, 0.2) and isinstance(spec.aspect_ratio, tuple)
    with pytest.raises(ValueError):
        MaskSpec(0, (0.1, 0.2))
    with pytest.raises(ValueError):
        MaskSpec(1, (0.3, 0.2))
    with pytest.raises(ValueError):
        MaskSpec(1, (0.0, 0.2))
    with pytest.raises(ValueError):
        MultiBlockMaskSampler((1, 1, 1))
    with pytest.raises(ValueError):
        MultiBlockMaskSampler(GRID)(0)
