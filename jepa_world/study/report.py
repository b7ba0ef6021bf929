"""The label-efficiency study's table and plot: success against the fraction of action-labelled
episodes, one row per initialisation, the spread over the random subsets beside the mean."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from jepa_world.files import atomic_path, write_json_atomic, write_text_atomic

PLOT = "label-efficiency.png"
CONTROLS = ("random", "pixels")  # what a pretrained row must beat: no pretraining, pixels


def summarise(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean, min and max over the subsets of each (initialisation, fraction)."""
    groups: dict[tuple[str, float], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault((row["init"], row["fraction"]), []).append(row)
    summary = []
    for (init, fraction), members in groups.items():
        end = np.array([m["success"] for m in members])
        anywhere = np.array([m["success_any"] for m in members])
        summary.append({
            "init": init, "fraction": fraction, "subsets": len(members),
            "labelled_episodes": members[0]["labelled_episodes"],
            "episodes_each": members[0]["episodes"],
            "success_mean": float(end.mean()), "success_min": float(end.min()),
            "success_max": float(end.max()), "success_std": float(end.std()),
            "success_any_mean": float(anywhere.mean()),
        })
    return sorted(summary, key=lambda s: (s["fraction"], s["init"]))


def gaps(summary: list[dict[str, Any]], rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per fraction: each row's mean success minus each control's (``CONTROLS``), in points,
    over the subsets both have evaluated, and the held-out episodes it won and lost against
    that control, paired by subset and episode (the same start and goal for both models):
    the noise of 20-50 episodes per model hides a 10-point gap, the pairs show which way the
    episodes that differ go."""
    keys = sorted({(s["init"], s["fraction"]) for s in summary}, key=lambda key: (key[1], key[0]))
    by_subset = {(r["init"], r["fraction"], r["subset"]): r for r in rows}
    result = []
    for init, fraction in keys:
        if init in CONTROLS:
            continue
        for control in CONTROLS:
            pairs = [(row, by_subset[(control, fraction, subset)])
                     for (arm, at, subset), row in by_subset.items()
                     if (arm, at) == (init, fraction) and (control, fraction, subset) in by_subset]
            if not pairs:
                continue
            won = lost = 0
            for mine, theirs in pairs:
                shared = mine["episode_success"].keys() & theirs["episode_success"].keys()
                won += sum(mine["episode_success"][k] and not theirs["episode_success"][k]
                           for k in shared)
                lost += sum(theirs["episode_success"][k] and not mine["episode_success"][k]
                            for k in shared)
            points = np.mean([mine["success"] - theirs["success"] for mine, theirs in pairs])
            result.append({"fraction": fraction, "init": init, "versus": control,
                           "subsets": len(pairs), "points": 100 * float(points),
                           "episodes_won": won, "episodes_lost": lost})
    return result


def markdown(summary: list[dict[str, Any]], differences: list[dict[str, Any]], env: str,
             variants: dict[str, list[str]] | None = None,
             pending: list[str] | None = None) -> str:
    lines = [f"Label efficiency on {env}: success at the END of the budget, mean over the "
             "random subsets (min-max), success at any step beside it.", "",
             "| fraction | labelled episodes | initialisation | subsets | success (end) | "
             "min-max | success (any step) |", "|---|---|---|---|---|---|---|"]
    for s in summary:
        lines.append(f"| {100 * s['fraction']:g} % | {s['labelled_episodes']} | {s['init']} | "
                     f"{s['subsets']} x {s['episodes_each']} | {100 * s['success_mean']:.0f} % | "
                     f"{100 * s['success_min']:.0f}-{100 * s['success_max']:.0f} % | "
                     f"{100 * s['success_any_mean']:.0f} % |")
    if differences:
        counts = {(s["init"], s["fraction"]): s["subsets"] for s in summary}

        def partial(g: dict[str, Any]) -> str:  # some subsets of one side not evaluated yet
            full = max(counts[(g["init"], g["fraction"])], counts[(g["versus"], g["fraction"])])
            return f", {g['subsets']} of {full} subsets" if g["subsets"] < full else ""

        lines += ["", "Each row minus the controls (points, success at the end, on the subsets "
                  "both have; held-out episodes won / lost against the control, paired): "
                  + "; ".join(f"{100 * g['fraction']:g} %: {g['init']} {g['points']:+.0f} vs "
                              f"{g['versus']} ({g['episodes_won']} / {g['episodes_lost']}"
                              f"{partial(g)})" for g in differences)]
    for name, (init, *settings) in (variants or {}).items():
        pretrain = [item.removeprefix("pretrain.") for item in settings
                    if item.startswith("pretrain.")]
        train_ac = [item for item in settings if not item.startswith("pretrain.")]
        text = (f"its own {init} pretraining with {' '.join(pretrain)}" if pretrain
                else f"the {init} pretraining")
        if train_ac:
            text += f", its world models trained with {' '.join(train_ac)}"
        lines += ["", f"{name}: {text}"]
    if pending:
        lines += ["", f"Not evaluated yet ({len(pending)}; the means above leave them out): "
                  + ", ".join(pending)]
    return "\n".join(lines) + "\n"


def plot(summary: list[dict[str, Any]], path: Path, env: str) -> None:
    from matplotlib.figure import Figure  # no pyplot: no GUI backend

    figure = Figure(figsize=(6.0, 4.0))
    axis = figure.subplots()
    inits = sorted({s["init"] for s in summary})
    for number, init in enumerate(inits):
        rows = [s for s in summary if s["init"] == init]
        dodge = 1.04 ** (number - (len(inits) - 1) / 2)  # equal rates stay visible side by side
        x = [100 * s["fraction"] * dodge for s in rows]
        mean = np.array([100 * s["success_mean"] for s in rows])
        low = mean - np.array([100 * s["success_min"] for s in rows])
        high = np.array([100 * s["success_max"] for s in rows]) - mean
        line = axis.errorbar(x, mean, yerr=[low, high], marker="o", capsize=3,
                             label=f"{init}: end of budget")
        axis.plot(x, [100 * s["success_any_mean"] for s in rows], linestyle=":", marker="x",
                  color=line[0].get_color(), label=f"{init}: any step")
    axis.set_xscale("log")
    fractions = sorted({100 * s["fraction"] for s in summary})
    axis.set_xticks(fractions, [f"{f:g} %" for f in fractions])
    axis.minorticks_off()
    axis.set_xlabel("action-labelled episodes (% of the pool)")
    axis.set_ylabel("success (%)")
    axis.set_ylim(-2, 102)
    axis.set_title(f"{env}: what pretraining buys a world model", fontsize=10)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=7)
    figure.tight_layout()
    with atomic_path(path) as staging:
        figure.savefig(staging, format="png", dpi=110)


def write_report(out: Path, rows: list[dict[str, Any]], env: str,
                 variants: dict[str, list[str]] | None = None,
                 pending: list[str] | None = None) -> str:
    """results.json, results.md and the plot into ``out``; returns the table. ``variants``:
    name -> [initialisation, train_ac settings..., pretrain.KEY=V settings...] of the rows
    that are variants; ``pending``: the models ("ARM LABEL") not evaluated yet."""
    summary = summarise(rows)
    differences = gaps(summary, rows)
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / "results.json", {"env": env, "runs": rows, "summary": summary,
                                             "minus_controls": differences,
                                             "variants": variants or {},
                                             "pending": pending or []})
    table = markdown(summary, differences, env, variants, pending)
    write_text_atomic(out / "results.md", table)
    if summary:
        plot(summary, out / PLOT, env)
    return table
