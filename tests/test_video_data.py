"""Video clip loading on real (tiny) mp4 files written with ffmpeg."""

from __future__ import annotations

import warnings
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pytest
import torch

from jepa_world.data import video as video_mod
from jepa_world.data.video import (
    ClipSpec,
    CorpusError,
    StepBatchSampler,
    UnreadableVideoWarning,
    VideoClipDataset,
    discover_videos,
    make_step_loader,
    video_probabilities,
)

RAW = {"mean": (0.0, 0.0, 0.0), "std": (1.0, 1.0, 1.0)}  # output = pixel / 255


def write_video(path: Path, frames: np.ndarray, faststart: bool = False) -> Path:
    """Write uint8 [T,H,W,3] frames as an H.264 mp4 (index at the front with faststart)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    t, h, w, _ = frames.shape
    writer = imageio_ffmpeg.write_frames(
        str(path),
        (w, h),
        codec="libx264",
        pix_fmt_out="yuv420p",
        fps=10,
        macro_block_size=1,
        output_params=["-movflags", "+faststart"] if faststart else None,
    )
    writer.send(None)
    for frame in frames:
        writer.send(np.ascontiguousarray(frame).tobytes())
    writer.close()
    return path


def ramp_frames(n: int, size: int = 32, step: int = 8) -> np.ndarray:
    """Flat gray frames whose brightness encodes the frame index (frame i = i * step)."""
    values = (np.arange(n) * step).clip(0, 255).astype(np.uint8)
    return np.broadcast_to(values[:, None, None, None], (n, size, size, 3)).copy()


def gradient_frames(n: int, size: int = 64) -> np.ndarray:
    """Smooth texture (red = x, green = y, blue = time) so crops and flips are visible."""
    ramp = np.linspace(0, 255, size)
    frames = np.zeros((n, size, size, 3), dtype=np.uint8)
    frames[..., 0] = ramp[None, None, :]
    frames[..., 1] = ramp[None, :, None]
    frames[..., 2] = (np.arange(n) * 8 % 256)[:, None, None]
    return frames


@pytest.fixture(scope="session")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Six good 64x64 videos of 20-30 frames in nested folders."""
    root = tmp_path_factory.mktemp("corpus")
    for i in range(6):
        sub = root / ("a" if i % 2 else "b") / ("deep" if i > 3 else "")
        write_video(sub / f"v{i}.mp4", np.roll(gradient_frames(20 + 2 * i), i * 5, axis=2))
    return root


@pytest.fixture(scope="session")
def good_mp4(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_video(tmp_path_factory.mktemp("good") / "good.mp4", gradient_frames(24))


# ----------------------------------------------------------------------------- discovery


def test_discover_folder_recursive_mixed_extensions(tmp_path: Path) -> None:
    names = ["x.mp4", "sub/Y.MP4", "sub/deeper/z.mkv", "w.WebM", "q.avi", "r.Mov"]
    for name in names + ["notes.txt", "sub/img.png", "index.csv"]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    found = discover_videos(tmp_path)
    assert found == sorted(tmp_path / n for n in names)
    assert discover_videos(str(tmp_path)) == found  # str accepted, same order


def test_discover_index_file_relative_paths_labels_comments(tmp_path: Path) -> None:
    (tmp_path / "lists").mkdir()
    index = tmp_path / "lists" / "train.csv"
    index.write_text(
        "# kinetics-style index\n"
        "\n"
        "../clips/a.mp4 3\n"
        f"{tmp_path / 'abs.mp4'} 0\n"
        "clips/nolabel.mp4\n"
        "  ../clips/b c.mp4 17  \n"
    )
    assert discover_videos(index) == [
        tmp_path / "lists" / "../clips/a.mp4",
        tmp_path / "abs.mp4",
        tmp_path / "lists" / "clips/nolabel.mp4",
        tmp_path / "lists" / "../clips/b c.mp4",
    ]
    txt = tmp_path / "one.txt"
    txt.write_text("v.mp4 1\n")
    assert discover_videos(txt) == [tmp_path / "v.mp4"]


def test_discover_single_file_and_missing_source(tmp_path: Path, good_mp4: Path) -> None:
    assert discover_videos(good_mp4) == [good_mp4]
    missing = tmp_path / "nope"
    with pytest.raises(CorpusError, match="nope"):
        discover_videos(missing)
    with pytest.raises(CorpusError, match="nope"):
        VideoClipDataset([good_mp4, missing], ClipSpec())


def test_empty_corpus_raises(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(CorpusError, match="no videos found"), pytest.warns(UnreadableVideoWarning):
        VideoClipDataset([tmp_path / "empty"], ClipSpec())


def test_bad_weights_rejected(corpus: Path) -> None:
    with pytest.raises(ValueError, match="weights"):
        VideoClipDataset([corpus], ClipSpec(), weights=[1.0, 2.0])


# ----------------------------------------------------------------------------- items


def test_item_shape_dtype_and_normalisation(tmp_path: Path) -> None:
    gray = np.full((12, 32, 32, 3), 128, dtype=np.uint8)
    path = write_video(tmp_path / "gray.mp4", gray)
    spec = ClipSpec(frames_per_clip=4, frame_step=2, resolution=16)
    item = VideoClipDataset([path], spec)[0]
    assert set(item) >= {"video", "index", "path"}
    assert item["index"] == 0 and item["path"] == str(path)
    video = item["video"]
    assert video.shape == (3, 4, 16, 16) and video.dtype == torch.float32
    expected = (128 / 255 - torch.tensor(spec.mean)) / torch.tensor(spec.std)
    assert torch.allclose(video.mean(dim=(1, 2, 3)), expected, atol=0.05)


def test_frame_step_respected(tmp_path: Path) -> None:
    path = write_video(tmp_path / "ramp.mp4", ramp_frames(30))
    # Eval mode takes the centered clip: span 10 of 30 frames starts at 10 -> 10, 13, 16, 19.
    spec = ClipSpec(frames_per_clip=4, frame_step=3, resolution=16, train=False, **RAW)
    levels = VideoClipDataset([path], spec)[0]["video"].mean(dim=(0, 2, 3)) * 255
    assert torch.allclose(levels, torch.tensor([80.0, 104.0, 128.0, 152.0]), atol=4)
    # Train mode: random start, but consecutive frames are still frame_step apart.
    spec = ClipSpec(frames_per_clip=5, frame_step=2, resolution=16, **RAW)
    ds = VideoClipDataset([path], spec)
    for epoch in range(3):
        levels = ds.get(0, epoch)["video"].mean(dim=(0, 2, 3)) * 255
        assert torch.allclose(levels.diff(), torch.full((4,), 16.0), atol=4)


def test_short_video_padded_with_last_frame(tmp_path: Path) -> None:
    path = write_video(tmp_path / "short.mp4", ramp_frames(7, step=20))
    spec = ClipSpec(frames_per_clip=8, frame_step=2, resolution=16, **RAW)
    video = VideoClipDataset([path], spec)[0]["video"]
    assert video.shape == (3, 8, 16, 16)
    levels = video.mean(dim=(0, 2, 3)) * 255  # frames 0, 2, 4, 6 then 6 repeated
    assert torch.allclose(levels, torch.tensor([0, 40, 80, 120, 120, 120, 120, 120.0]), atol=4)
    assert torch.equal(video[:, 3], video[:, 7])


def test_eval_mode_is_deterministic_center_crop(good_mp4: Path) -> None:
    spec = ClipSpec(frames_per_clip=4, frame_step=2, resolution=32, train=False)
    ds = VideoClipDataset([good_mp4], spec)
    first = ds[0]["video"]
    assert torch.equal(first, ds.get(0, epoch=5)["video"])


def test_same_crop_for_all_frames_and_epoch_changes_it(good_mp4: Path) -> None:
    spec = ClipSpec(frames_per_clip=4, frame_step=2, resolution=32, **RAW)
    ds = VideoClipDataset([good_mp4], spec, seed=3)
    clips = []
    for epoch in range(4):
        clip = ds.get(0, epoch)["video"]
        assert torch.equal(clip, ds.get(0, epoch)["video"])  # repeatable within an epoch
        # red/green (space) are identical over time: one crop and flip for the whole clip
        assert (clip[:2] - clip[:2, :1]).abs().max() < 0.05
        clips.append(clip)
    assert all(not torch.equal(clips[0], c) for c in clips[1:])
    other_seed = VideoClipDataset([good_mp4], spec, seed=4)
    assert not torch.equal(clips[0], other_seed[0]["video"])


def test_decode_small_matches_full_size_decode(tmp_path: Path, monkeypatch) -> None:
    path = write_video(tmp_path / "big.mp4", gradient_frames(10, size=192))
    spec = ClipSpec(frames_per_clip=2, frame_step=2, resolution=16, **RAW)
    assert video_mod._decode_size(192, 192, spec) is not None
    small = VideoClipDataset([path], spec)
    cold = small[0]["video"]  # first sight: full decode to learn the size, then small decode
    warm = small[0]["video"]  # size cached: small decode straight away
    assert torch.equal(cold, warm)
    monkeypatch.setattr(video_mod, "_DECODE_SMALL_BELOW", 0.0)  # force full-size decoding
    full = VideoClipDataset([path], spec)[0]["video"]
    assert (full - cold).abs().mean() < 0.02


def test_failed_small_decode_falls_back_to_full_size(tmp_path: Path, monkeypatch) -> None:
    # decord returns mis-sized frames for some widths (16 here); the file must stay readable.
    path = write_video(tmp_path / "v.mp4", gradient_frames(6, size=32))
    spec = ClipSpec(frames_per_clip=2, frame_step=2, resolution=16, train=False)
    monkeypatch.setattr(video_mod, "_DECORD_BAD_WIDTHS", frozenset())
    assert video_mod._decode_size(32, 32, spec) == (16, 16)
    ds = VideoClipDataset([path], spec)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cold, warm = ds[0]["video"], ds[0]["video"]
    assert ds.skipped == 0 and torch.equal(cold, warm)
    monkeypatch.setattr(video_mod, "_DECODE_SMALL_BELOW", 0.0)
    assert torch.equal(cold, VideoClipDataset([path], spec)[0]["video"])


# ----------------------------------------------------------------------------- loader


def test_step_loader_is_deterministic_across_workers_and_resumes_exactly(corpus: Path) -> None:
    spec = ClipSpec(frames_per_clip=4, frame_step=2, resolution=32)
    clips = VideoClipDataset([corpus], spec)
    runs = {w: list(make_step_loader(clips, 2, 0, 4, seed=5, num_workers=w)) for w in (0, 2)}
    for b0, b2 in zip(runs[0], runs[2], strict=True):
        assert b0.shape == (2, 3, 4, 32, 32)
        assert torch.equal(b0, b2)
    assert len(runs[0]) == 4
    assert not torch.equal(runs[0][0], runs[0][1])  # each step draws new videos or crops
    resumed = list(make_step_loader(clips, 2, 2, 4, seed=5))
    assert all(torch.equal(a, b) for a, b in zip(resumed, runs[0][2:], strict=True))


def test_step_loader_rejects_bad_shapes(corpus: Path) -> None:
    clips = VideoClipDataset([corpus], ClipSpec(frames_per_clip=2, frame_step=1, resolution=16))
    with pytest.raises(ValueError, match="batch_size"):
        make_step_loader(clips, 0, 0, 1, seed=0)
    with pytest.raises(ValueError, match="rank"):
        make_step_loader(clips, 2, 0, 1, seed=0, rank=2, world_size=2)


# ----------------------------------------------------------------------------- sampler


def _placeholder_sources(root: Path, sizes: list[int]) -> list[Path]:
    """Sources of empty files: the sampler never opens videos."""
    sources = []
    for s, size in enumerate(sizes):
        folder = root / f"src{s}"
        folder.mkdir()
        for i in range(size):
            (folder / f"{i}.mp4").write_bytes(b"")
        sources.append(folder)
    return sources


def _draws(sampler: StepBatchSampler) -> np.ndarray:
    """Video ids of every batch, the step tag removed."""
    n = len(sampler.probs)
    return np.array([i % n for batch in sampler for i in batch])


def test_weighted_mixing_proportions(tmp_path: Path) -> None:
    sources = _placeholder_sources(tmp_path, [5, 20])
    ds = VideoClipDataset(sources, ClipSpec(), weights=[3.0, 1.0])
    sampler = StepBatchSampler(video_probabilities(ds), batch_size=100, start=0, stop=40, seed=1)
    draws = _draws(sampler)
    assert len(draws) == 4000 and len(sampler) == 40
    from_first = (draws < 5).mean()
    assert abs(from_first - 0.75) < 0.03
    counts = np.bincount(draws, minlength=25)
    assert counts[:5].min() >= 0.8 * 600 and counts[5:].min() >= 0.6 * 50  # uniform in a source
    assert np.array_equal(draws, _draws(sampler))  # same steps, same draw
    later = StepBatchSampler(video_probabilities(ds), batch_size=100, start=40, stop=80, seed=1)
    assert not np.array_equal(draws, _draws(later))


def test_unweighted_sources_draw_every_video_alike(tmp_path: Path) -> None:
    ds = VideoClipDataset(_placeholder_sources(tmp_path, [4, 7]), ClipSpec())
    probs = video_probabilities(ds)
    assert np.allclose(probs, 1 / 11)


def test_step_tags_carry_the_step(tmp_path: Path) -> None:
    ds = VideoClipDataset(_placeholder_sources(tmp_path, [3]), ClipSpec())
    batches = list(StepBatchSampler(video_probabilities(ds), 2, start=5, stop=7, seed=0))
    assert [sorted({i // 3 for i in batch}) for batch in batches] == [[5], [6]]


def test_distributed_ranks_split_one_global_draw(tmp_path: Path) -> None:
    ds = VideoClipDataset(_placeholder_sources(tmp_path, [6, 6]), ClipSpec())
    probs = video_probabilities(ds)
    ranks = [list(StepBatchSampler(probs, 4, 0, 3, seed=7, rank=r, world_size=3)) for r in range(3)]
    whole = list(StepBatchSampler(probs, 12, 0, 3, seed=7))
    for step in range(3):
        assert sum((ranks[r][step] for r in range(3)), []) == whole[step]


# ----------------------------------------------------------------------------- broken files


def test_broken_files_skipped_warned_and_counted(tmp_path: Path, good_mp4: Path) -> None:
    folder = tmp_path / "mixed"
    write_video(folder / "ok1.mp4", gradient_frames(12, size=32))
    write_video(folder / "ok2.mp4", gradient_frames(12, size=32))
    (folder / "empty.mp4").write_bytes(b"")
    (folder / "noise.mp4").write_bytes(np.random.default_rng(0).bytes(4096))
    data = good_mp4.read_bytes()
    (folder / "half.mp4").write_bytes(data[: len(data) // 2])  # index (moov) at the end: lost
    front = write_video(tmp_path / "front.mp4", gradient_frames(24), faststart=True).read_bytes()
    (folder / "half_front.mp4").write_bytes(front[: len(front) // 2])  # index kept, data cut
    index = tmp_path / "index.txt"
    index.write_text("mixed/ok1.mp4 0\nmissing/gone.mp4 1\n")

    spec = ClipSpec(frames_per_clip=2, frame_step=2, resolution=16)
    ds = VideoClipDataset([folder, index], spec)
    assert len(ds) == 8 and ds.skipped == 0  # nothing opened at construction
    good = {str(folder / "ok1.mp4"), str(folder / "ok2.mp4")}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        items = [ds[i] for i in range(len(ds))]
    assert all(it["path"] in good and it["video"].shape == (3, 2, 16, 16) for it in items)
    assert [it["index"] for it in items] == list(range(8))
    messages = " ".join(str(w.message) for w in caught if w.category is UnreadableVideoWarning)
    broken = {"empty.mp4", "noise.mp4", "half.mp4", "half_front.mp4", "gone.mp4"}
    for name in broken:
        assert name in messages
    summary = ds.summary()
    # ok1.mp4 is listed twice (folder and index): 3 readable entries
    assert ds.skipped == 5 and summary["skipped"] == 5 and summary["readable"] == 3
    assert {Path(p).name for p in summary["skipped_paths"]} == broken
    # the replacement is deterministic, and remembering bad files does not change it
    fresh = VideoClipDataset([folder, index], spec)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for i in reversed(range(len(ds))):
            again = fresh[i]
            assert again["path"] == items[i]["path"]
            assert torch.equal(again["video"], items[i]["video"])


def test_all_broken_corpus_raises(tmp_path: Path) -> None:
    (tmp_path / "a.mp4").write_bytes(b"")
    (tmp_path / "b.mkv").write_bytes(np.random.default_rng(1).bytes(3000))
    ds = VideoClipDataset([tmp_path], ClipSpec(resolution=16))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(CorpusError, match="no readable videos"):
            ds[0]
        with pytest.raises(CorpusError, match="no readable videos"):
            ds[1]
    assert ds.skipped == 2
