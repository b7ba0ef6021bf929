"""The label-efficiency study: subsets, bad input, and a tiny study run end to end twice."""

from __future__ import annotations

import json

import pytest

from jepa_world.study.subsets import (
    SubsetError,
    draw_subsets,
    parse_fractions,
    pool_episodes,
    write_subset,
)
from tests.conftest import assert_error_line, assert_one_line_error, run_cli

POOL = [("data", f"{i:06d}") for i in range(40)] + [("fine", f"{i:06d}") for i in range(20)]


def test_subsets_honour_fractions_and_counts_and_are_reproducible():
    drawn = draw_subsets(POOL, [0.05, 0.1, 0.25, 1.0], 3, seed=7)
    sizes = {}
    for subset in drawn:
        sizes.setdefault(subset.fraction, []).append(len(subset.episodes))
        assert set(subset.episodes) <= set(POOL)
        assert len(set(subset.episodes)) == len(subset.episodes)
    assert sizes == {0.05: [3] * 3, 0.1: [6] * 3, 0.25: [15] * 3, 1.0: [60]}
    assert drawn == draw_subsets(POOL, [0.05, 0.1, 0.25, 1.0], 3, seed=7)
    other = draw_subsets(POOL, [0.05, 0.1, 0.25, 1.0], 3, seed=8)
    assert [s.episodes for s in other if s.fraction < 1] != [
        s.episodes for s in drawn if s.fraction < 1]
    tens = [s.episodes for s in drawn if s.fraction == 0.1]
    assert len(set(tens)) == 3  # three different subsets, not one three times
    # a subset depends on (seed, fraction, index) only: the other fractions do not move it
    alone = draw_subsets(POOL, [0.1], 3, seed=7)
    assert [s.episodes for s in alone] == tens


@pytest.mark.parametrize("text", ["0", "0,0.5", "1.5", "-0.1", "abc", "", "0.5,0.5"])
def test_bad_fractions_are_refused(text):
    with pytest.raises(SubsetError):
        parse_fractions(text)


def test_a_fraction_too_small_for_the_pool_is_refused():
    with pytest.raises(SubsetError, match="at least 2"):
        draw_subsets(POOL[:10], [0.05], 3, seed=0)


def test_a_subset_folder_reads_as_a_dataset_of_exactly_its_episodes(small_dataset, tmp_path):
    from jepa_world.data.episodes import EpisodeDataset

    datasets = {"data": small_dataset}
    pool = pool_episodes(datasets)
    (subset,) = draw_subsets(pool, [0.5], 1, seed=3)
    (folder,) = write_subset(subset, datasets, tmp_path / "subset")
    assert write_subset(subset, datasets, tmp_path / "subset") == [folder]  # rewrite: same
    data = EpisodeDataset(folder)
    source = EpisodeDataset(small_dataset)
    chosen = {name for _, name in subset.episodes}
    assert [e["name"] for e in data.entries] == sorted(chosen)
    for index, entry in enumerate(data.entries):
        original = [e["name"] for e in source.entries].index(entry["name"])
        assert (data.frames(index) == source.frames(original)).all()


@pytest.mark.parametrize(
    ("args", "needle"),
    [(["--fractions", "0,1"], "must be in (0, 1], got 0"),
     (["--fractions", "0.5,1.2"], "must be in (0, 1], got 1.2"),
     (["--inits", "vjepa,imagenet"], "unknown initialisation 'imagenet'"),
     (["--inits", "none"], "--inits none leaves no row: give a --variant"),
     (["--inits", "none,vjepa"], "unknown initialisation 'none'"),
     (["--variant", "slow=imagenet encoder.lr_scale=0.1"], "unknown initialisation 'imagenet'"),
     (["--variant", "slow=vjepa"], "--variant slow: give its train_ac settings"),
     (["--variant", "slow=vjepa lr_scale"], "--variant slow: give its train_ac settings"),
     (["--variant", "a/b=vjepa encoder.lr_scale=0.1"], "--variant takes 'NAME=INIT"),
     (["--variant", " "], "--variant takes 'NAME=INIT"),
     (["--variant", "random=vjepa encoder.lr_scale=0.1"], "--variant random: the name is taken"),
     (["--inits", "vjepa,random", "--variant", "pixels=vjepa encoder.lr_scale=0.1"],
      "--variant pixels: the name is taken"),
     (["--variant", "a=vjepa encoder.lr_scale=0.1", "--variant", "a=random encoder.lr_scale=0.5"],
      "--variant a: the name is taken"),
     (["--variant", "slow=vjepa encoder.lr_scail=0.1"], "train_ac"),
     (["--variant", "vic=random pretrain.train.variance_weight=1"],
      "--variant vic: the random initialisation has no pretraining"),
     (["--variant", "vic=vjepa pretrain.train.variance_wait=1"], "pretrain"),
     (["--subsets", "0"], "--subsets must be positive"),
     (["--eval-seed", "-1"], "--eval-seed must be in"),
     (["train_ac.train.steps=3", "planner.x=1"], "unrecognised argument 'planner.x=1'"),
     (["train_ac.train.stepz=3"], "train_ac"),
     (["--env", "pushy"], "pushy"),
     (["--report"], "has no recorded pool")],
)
def test_study_bad_input_is_one_line(tmp_path, capsys, args, needle):
    from jepa_world.study.label_efficiency import main

    env = [] if "--env" in args else ["--env", "reach"]
    assert main([*env, "--out", str(tmp_path / "study"), *args]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and needle in lines[0], lines
    assert not (tmp_path / "study" / "data").exists()  # refused before recording anything
    assert not (tmp_path / "study" / "results.md").exists()


def test_study_errors_reach_the_command_line_as_one_line():
    result = run_cli("-m", "jepa_world.study", "label-efficiency", "--env", "reach",
                     "--fractions", "0.1,2")
    assert_one_line_error(result, "must be in (0, 1], got 2")
    assert result.returncode == 2
    assert_one_line_error(run_cli("-m", "jepa_world.study", "label-efficency"),
                          "unknown study 'label-efficency'")


TINY = [
    "--episodes", "4", "--steps", "20", "--fractions", "0.5,1", "--subsets", "1",
    "--inits", "vjepa,random", "--eval-episodes", "1",
    "--variant", "vjepa-frozen=vjepa encoder.frozen_steps=1 encoder.lr_scale=0.5",
    "pretrain.train.steps=2", "pretrain.train.batch_size=4", "pretrain.train.num_workers=0",
    "pretrain.train.warmup_steps=1", "pretrain.train.tensorboard=false",
    "train_ac.train.steps=2", "train_ac.train.batch_size=8", "train_ac.train.warmup_steps=1",
    "train_ac.train.eval_every=2", "train_ac.model.frameskip=2", "train_ac.train.context=3",
    "train_ac.model.head.hidden=32", "train_ac.model.head.dim=16",
    "train_ac.train.sigreg_directions=16", "train_ac.train.calibration_batches=2",
    "mpc.budget=4", "mpc.horizon=2", "mpc.cem.samples=16", "mpc.cem.elites=4",
    "mpc.cem.iterations=2", "mpc.num_envs=1",
]


def test_tiny_study_runs_end_to_end_and_a_rerun_skips_what_is_done(tmp_path):
    out = tmp_path / "study"
    result = run_cli("-m", "jepa_world.study", "label-efficiency", "--env", "reach", "--out",
                     str(out), *TINY, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((out / "results.json").read_text())
    runs = {(r["init"], r["fraction"]) for r in report["runs"]}
    assert runs == {(i, f) for i in ("vjepa", "random", "vjepa-frozen") for f in (0.5, 1.0)}
    assert {(g["init"], g["versus"]) for g in report["minus_controls"]} == {
        ("vjepa", "random"), ("vjepa-frozen", "random")}
    assert report["variants"] == {"vjepa-frozen": ["vjepa", "encoder.frozen_steps=1",
                                                   "encoder.lr_scale=0.5"]}
    assert {r["labelled_episodes"] for r in report["runs"]} == {2, 4}
    assert (out / "label-efficiency.png").stat().st_size > 0
    assert "| 50 % | 2 | vjepa |" in (out / "results.md").read_text()
    assert "| 100 % | 4 | random |" in result.stdout
    # the held-out planning episodes are none of the episodes any model trained on
    trained = {e["seed"] for path in out.glob("data/*/manifest.json")
               for e in json.loads(path.read_text())["episodes"]}
    planned = {s for path in out.glob("evals/seed0-1ep/*/*.json")
               for s in json.loads(path.read_text())["eval_seeds"]}
    assert trained and planned and not trained & planned
    (subset,) = out.glob("subsets/p50-0/*/manifest.json")
    assert len(json.loads(subset.read_text())["episodes"]) == 2
    # each model says where its encoder started: the study's own pretraining runs; a variant
    # starts from its initialisation's and trains with its own settings, the others without
    for arm, init, started in (("vjepa", "vjepa", "pretrained"), ("random", "random", "random"),
                               ("vjepa-frozen", "vjepa", "pretrained")):
        provenance = json.loads((out / "models" / arm / "p100-0" / "world_model" /
                                 "provenance.json").read_text())
        assert provenance["encoder_init"] == started and provenance["built"] == "end_to_end"
        assert provenance["encoder_source"]["checkpoint"].startswith(str(out / "pretrain" / init))
    assert sorted(path.name for path in (out / "pretrain").iterdir()) == ["random", "vjepa"]
    stages = json.loads((out / "stages.json").read_text())
    assert "encoder.frozen_steps=1" in stages["train vjepa-frozen p50-0"]["what"]
    assert "encoder.frozen_steps=1" not in stages["train vjepa p50-0"]["what"]
    weights = {path: path.stat().st_mtime_ns for path in out.glob("models/*/*/world_model/*")}

    again = run_cli("-m", "jepa_world.study", "label-efficiency", "--env", "reach", "--out",
                    str(out), *TINY, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "train vjepa p50-0: done" in again.stderr
    assert "plan random p100-0 seed0-1ep: done" in again.stderr
    assert "jepa_world.train_ac" not in again.stderr and "planners.mpc" not in again.stderr
    assert again.stderr.count("[study] table of 6 evaluated models (0 not yet)") == 1
    assert weights == {path: path.stat().st_mtime_ns
                       for path in out.glob("models/*/*/world_model/*")}
    # more held-out episodes are another evaluation of the same models: nothing retrains,
    # every model plans again, and the first evaluation's results stay
    more = run_cli("-m", "jepa_world.study", "label-efficiency", "--env", "reach", "--out",
                   str(out), *TINY, "--eval-episodes", "2", timeout=600)
    assert more.returncode == 0, more.stderr[-3000:]
    assert "jepa_world.train_ac" not in more.stderr
    assert more.stderr.count("python -m planners.mpc") == 6
    assert more.stderr.count("[study] table of") == 6  # once after each model planned
    assert {r["episodes"] for r in json.loads((out / "results.json").read_text())["runs"]} == {2}
    for evaluation, episodes in (("seed0-1ep", 1), ("seed0-2ep", 2)):
        report = json.loads((out / "evals" / evaluation / "results.json").read_text())
        assert {r["episodes"] for r in report["runs"]} == {episodes}
        assert len(list(out.glob(f"evals/{evaluation}/*/*.json"))) == 6
    assert weights == {path: path.stat().st_mtime_ns
                       for path in out.glob("models/*/*/world_model/*")}
    # changed settings would mix two studies in one table: refused, nothing retrained
    changed = run_cli("-m", "jepa_world.study", "label-efficiency", "--env", "reach", "--out",
                      str(out), *TINY, "train_ac.train.lr=1e-3", timeout=600)
    assert_error_line(changed, "train vjepa p50-0 ran with other settings")
    assert weights == {path: path.stat().st_mtime_ns
                       for path in out.glob("models/*/*/world_model/*")}
    # --report writes the table of what is evaluated so far, and nothing else runs; a model
    # not evaluated yet is listed, not counted
    (out / "evals" / "seed0-1ep" / "random" / "p100-0.json").unlink()
    partial = run_cli("-m", "jepa_world.study", "label-efficiency", "--env", "reach", "--out",
                      str(out), *TINY, "--report", timeout=600)
    assert partial.returncode == 0, partial.stderr[-3000:]
    assert partial.stderr.count("[study] table of 5 evaluated models (1 not yet)") == 1
    assert not any(stage in partial.stderr for stage in ("envs.collect", "jepa_world.pretrain",
                                                         "jepa_world.train_ac", "planners.mpc"))
    report = json.loads((out / "results.json").read_text())
    assert report["pending"] == ["random p100-0"] and len(report["runs"]) == 5
    assert ("random", 1.0) not in {(r["init"], r["fraction"]) for r in report["runs"]}
    assert "Not evaluated yet (1; the means above leave them out): random p100-0" in (
        out / "results.md").read_text()
    assert "| 50 % | 2 | random |" in partial.stdout
    assert weights == {path: path.stat().st_mtime_ns
                       for path in out.glob("models/*/*/world_model/*")}


def test_more_video_joins_every_pretraining_corpus_but_not_the_labelled_pool(tmp_path):
    from jepa_world.study.label_efficiency import (
        Study,
        make_arms,
        pretrain_command,
        route,
        train_command,
    )

    study = Study("reach", tmp_path, 0, 5, 0, make_arms(["vjepa", "pixels", "random"], []),
                  route([]), [str(tmp_path / "other-video")])
    for arm in study.pretrainings.values():
        corpus = next(a for a in pretrain_command(study, [], arm) if a.startswith("data.paths="))
        assert corpus.endswith(f",{tmp_path / 'other-video'}]"), corpus
    train = train_command(study, [], study.arms[0], "p5-0", [tmp_path / "subset"])
    assert f"data.paths=[{tmp_path / 'subset'}]" in train and "other-video" not in " ".join(train)


def test_the_gap_to_a_control_pairs_episodes_by_subset_and_start():
    from jepa_world.study.report import gaps, markdown, summarise

    def row(init, subset, outcomes):
        return {"init": init, "fraction": 0.1, "subset": subset, "labelled_episodes": 4,
                "success": sum(outcomes) / len(outcomes), "success_any": 1.0,
                "episodes": len(outcomes),
                "episode_success": {str(seed): won for seed, won in enumerate(outcomes)}}

    rows = [row("vjepa", 0, [True, True, False, False]),
            row("random", 0, [True, False, True, False]),
            row("vjepa", 1, [True, True, True, False]),
            row("random", 1, [False, False, False, False])]
    summary = summarise(rows)
    (gap,) = gaps(summary, rows)
    # subset 0: one won (episode 1), one lost (episode 2); subset 1: three won
    assert (gap["init"], gap["versus"], gap["episodes_won"], gap["episodes_lost"]) == (
        "vjepa", "random", 4, 1)
    assert gap["points"] == pytest.approx(100 * (5 / 8 - 2 / 8))
    assert "10 %: vjepa +38 vs random (4 / 1)" in markdown(summary, [gap], "reach")
    # a row part-way through its subsets is compared on the subsets it shares with the control
    partial = rows[:3]
    (gap,) = gaps(summarise(partial), partial)
    assert (gap["subsets"], gap["episodes_won"], gap["episodes_lost"]) == (1, 1, 1)
    assert gap["points"] == pytest.approx(0.0)  # subset 0: 2/4 against 2/4, not 5/8 against 2/4
    assert "10 %: vjepa +0 vs random (1 / 1, 1 of 2 subsets)" in markdown(
        summarise(partial), [gap], "reach")
    variants = {"v": ["vjepa", "encoder.lr_scale=0.5", "pretrain.train.variance_weight=1.0"],
                "w": ["vjepa", "encoder.frozen_steps=5"]}
    table = markdown(summary, [gap], "reach", variants)
    assert ("v: its own vjepa pretraining with train.variance_weight=1.0, its world models "
            "trained with encoder.lr_scale=0.5") in table
    assert "w: the vjepa pretraining, its world models trained with encoder.frozen_steps=5" in table


def test_a_variant_with_pretraining_settings_gets_its_own_pretraining_run(tmp_path):
    from jepa_world.study.label_efficiency import (
        Study,
        make_arms,
        pretrain_command,
        route,
        train_command,
    )

    vicreg = ("vjepa-vicreg=vjepa pretrain.train.variance_weight=1.0 "
              "pretrain.train.covariance_weight=0.04 encoder.lr_scale=0.5")
    study = Study("reach", tmp_path, 0, 5, 0,
                  make_arms(["vjepa", "random"], [vicreg, "vjepa-lr=vjepa encoder.lr_scale=0.1"]),
                  route([]), [])
    runs = study.pretrainings
    assert list(runs) == ["vjepa", "random", "vjepa-vicreg"]  # vjepa-lr shares vjepa's run
    own = pretrain_command(study, [], runs["vjepa-vicreg"])
    plain = pretrain_command(study, [], runs["vjepa"])
    assert f"out_dir={tmp_path / 'pretrain' / 'vjepa-vicreg'}" in own
    assert {"objective=features", "train.variance_weight=1.0",
            "train.covariance_weight=0.04"} <= set(own)
    assert "train.variance_weight=1.0" not in plain
    assert f"out_dir={tmp_path / 'pretrain' / 'vjepa'}" in plain
    arms = {arm.name: arm for arm in study.arms}
    train = train_command(study, [], arms["vjepa-vicreg"], "p5-0", [tmp_path / "subset"])
    assert f"encoder.checkpoint={tmp_path / 'pretrain' / 'vjepa-vicreg'}" in train
    assert "encoder.lr_scale=0.5" in train and not any("variance_weight" in a for a in train)
    shared = train_command(study, [], arms["vjepa-lr"], "p5-0", [tmp_path / "subset"])
    assert f"encoder.checkpoint={tmp_path / 'pretrain' / 'vjepa'}" in shared


def test_inits_none_runs_only_the_variant_rows(tmp_path):
    from jepa_world.study.label_efficiency import Study, make_arms, parse_inits, route

    assert parse_inits("none") == []
    vicreg = "gentle=vjepa pretrain.train.variance_weight=1.0 encoder.frozen_steps=300"
    study = Study("reach", tmp_path, 0, 5, 0, make_arms(parse_inits("none"), [vicreg]),
                  route([]), [])
    assert [arm.name for arm in study.arms] == ["gentle"]
    assert list(study.pretrainings) == ["gentle"]  # not the plain vjepa run it is a variant of
