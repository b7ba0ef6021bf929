"""``--help`` for the Hydra-composed commands: every setting, its default and one line.

The defaults are the composed config (so ``model=small --help`` shows the small preset), and
the lines are the comments that sit beside (or just above) each key in ``configs/*.yaml``: the
YAML files stay the one place where a setting is explained.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

HELP_FLAGS = ("--help", "-h")
_KEY_LINE = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z_][\w-]*):(?P<rest>.*)$")


class HelpShown(Exception):
    """Raised after the help text was printed: the command ends with status 0."""


def wants_help(argv: list[str]) -> bool:
    return any(arg in HELP_FLAGS for arg in argv)


def yaml_comments(path: Path, prefix: str = "") -> dict[str, str]:
    """``dotted.key -> comment`` for the keys of one YAML file: the comment on the key's line
    (with its continuation lines), else the comment block just above it."""
    comments: dict[str, str] = {}
    stack: list[tuple[int, str]] = []  # (indent, key) of the enclosing mappings
    above: list[str] = []
    last_key: str | None = None
    last_column = -1
    for raw in path.read_text().splitlines():
        stripped = raw.strip()
        if stripped.startswith("#"):
            text = stripped.lstrip("#").strip()
            column = len(raw) - len(raw.lstrip())
            if last_key is not None and column >= last_column > 0:
                comments[last_key] = f"{comments[last_key]} {text}".strip()
            else:
                above.append(text)
                last_key = None
            continue
        match = _KEY_LINE.match(raw)
        if not stripped or match is None:
            above, last_key = [], None
            continue
        indent = len(match["indent"])
        while stack and stack[-1][0] >= indent:
            stack.pop()
        key = ".".join([*(k for _, k in stack), match["key"]])
        dotted = f"{prefix}.{key}" if prefix else key
        value, _, comment = match["rest"].partition(" #")
        if comment.strip():
            comments[dotted] = comment.strip()
            last_key, last_column = dotted, raw.index(" #", len(match["indent"])) + 1
        else:
            if above and not above[0].startswith("python -m"):
                comments[dotted] = above[0]
            last_key, last_column = None, -1
        if not value.strip():
            stack.append((indent, match["key"]))
        above = []
    return comments


def _flatten(node: Any, prefix: str = "") -> list[tuple[str, Any]]:
    if isinstance(node, DictConfig) and len(node) > 0:
        items: list[tuple[str, Any]] = []
        for key in node:
            items += _flatten(node[key], f"{prefix}.{key}" if prefix else str(key))
        return items
    if isinstance(node, (DictConfig, ListConfig)):
        return [(prefix, OmegaConf.to_container(node))]
    return [(prefix, node)]


def _short(value: Any) -> str:
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        return f"[{len(value)} entries]"
    text = {None: "null", True: "true", False: "false"}.get(value, str(value)) \
        if isinstance(value, (bool, type(None))) else str(value)
    return text if len(text) <= 40 else text[:37] + "..."


def help_text(command: str, name: str, cfg: DictConfig, choices: dict[str, str],
              config_dir: Path, docs: str) -> str:
    """The text ``python -m <command> --help`` prints for ``configs/<name>.yaml``."""
    OmegaConf.resolve(cfg)
    comments = yaml_comments(config_dir / f"{name}.yaml")
    groups = []
    for group, choice in sorted(choices.items()):
        folder = config_dir / group
        if not folder.is_dir():
            continue
        comments.update(yaml_comments(folder / f"{choice}.yaml", prefix=group))
        comments.setdefault(group, f"the preset configs/{group}/{choice}.yaml")
        options = "|".join(sorted(p.stem for p in folder.glob("*.yaml")))
        groups.append(f"  {group}={choice}  (choices: {options})")
    rows = [(key, _short(value), comments.get(key, "")) for key, value in _flatten(cfg)]
    width = min(max(len(f"{k}={v}") for k, v, _ in rows), 44)
    lines = [f"usage: python -m {command} [key=value ...]", "",
             "Hydra-style overrides, e.g. train.steps=100; a config group picks a preset file:"]
    lines += groups or ["  (none)"]
    lines += ["", "settings (current value, then what it does):"]
    for key, value, comment in rows:
        setting = f"{key}={value}"
        lines.append(f"  {setting:<{width}}  {comment}".rstrip())
    lines += ["", f"docs: {docs}"]
    return "\n".join(lines)
