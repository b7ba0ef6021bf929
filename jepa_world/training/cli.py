"""Hydra configs for the commands, and the one-line error contract.

The commands use Hydra's compose API rather than ``@hydra.main``: overrides and config groups
work the same (``model=small train.steps=100``), but no output folders appear in the user's
working directory and every bad input ends in one line on stderr with a non-zero exit.
"""

from __future__ import annotations

import argparse
import math
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn, TypeVar

from omegaconf import DictConfig, OmegaConf, open_dict

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"


class DefaultsHelpFormatter(argparse.HelpFormatter):
    """argparse help that names a flag's default where it has one (not None or False)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        shown = not (action.default is None or action.default is False
                     or action.default == argparse.SUPPRESS)  # 0 is a default worth showing
        if shown and "%(default)" not in text and action.option_strings:
            text = f"{text} (default: %(default)s)".strip()
        return text


class CommandParser(argparse.ArgumentParser):
    """argparse with the commands' error contract: one ``error:`` line on stderr (no usage
    block) and exit status 2, as every Hydra command and planners.mpc report bad input."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", DefaultsHelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        print(f"error: {message} (see {self.prog} --help)", file=sys.stderr)
        sys.exit(2)


class UserError(Exception):
    """Bad input from the user (paths, names, shapes, settings): reported in one line."""


T = TypeVar("T")


def _register_resolvers() -> None:
    # ${dirname:gym:Reacher-v5} -> gym-Reacher-v5: a task name as a folder name
    if not OmegaConf.has_resolver("dirname"):
        OmegaConf.register_new_resolver("dirname", lambda name: str(name).replace(":", "-"))


# The module each Hydra config belongs to, and the docs page --help points to.
COMMANDS = {
    "pretrain": ("jepa_world.pretrain", "docs/pretraining.md"),
    "train_ac": ("jepa_world.train_ac", "docs/building.md"),
    "probe": ("jepa_world.probe", "docs/pretraining.md"),
    "distill": ("jepa_world.distill", "docs/rl.md"),
    "mpc": ("planners.mpc", "docs/planning.md"),
}


def load_config(name: str, overrides: list[str]) -> DictConfig:
    """Compose ``configs/<name>.yaml`` with Hydra-style ``key=value`` overrides; ``--help`` or
    ``-h`` among them prints every setting with its current value instead (HelpShown)."""
    _register_resolvers()
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from jepa_world.training.config_help import HELP_FLAGS, HelpShown, help_text, wants_help

    show_help = wants_help(overrides)
    overrides = [o for o in overrides if o not in HELP_FLAGS]
    config_dir = _config_dir()
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(config_dir), version_base=None):
            cfg = compose(config_name=name, overrides=overrides, return_hydra_config=show_help)
    except (HydraException, OmegaConfBaseException, ValueError) as exc:
        unknown = re.match(r"Could not override '([^']+)'", _one_line(exc))
        if unknown:
            raise UserError(_unknown_setting(name, overrides, unknown[1])) from None
        raise UserError(f"bad configuration: {_one_line(exc)}") from None
    if show_help:
        choices = dict(cfg.hydra.runtime.choices)
        with open_dict(cfg):
            del cfg["hydra"]
        command, docs = COMMANDS.get(name, (name, "README.md"))
        print(help_text(command, name, cfg, choices, config_dir, docs))
        raise HelpShown
    OmegaConf.resolve(cfg)
    return cfg


def _unknown_setting(name: str, overrides: list[str], key: str) -> str:
    """Hydra's "use +key=value to append" hint leads a mistyped key into the schema's check;
    name the known keys of the section right away instead."""
    kept = [o for o in overrides if o.split("=", 1)[0].lstrip("+~") != key]
    try:
        cfg = load_config(name, kept)
    except UserError:
        return f"bad configuration: unknown setting {key!r}"
    parts = key.split(".")
    depth = len(parts) - 1  # the deepest section of the key that exists
    while depth > 0 and not isinstance(OmegaConf.select(cfg, ".".join(parts[:depth])), DictConfig):
        depth -= 1
    parent, leaf = ".".join(parts[:depth]), parts[depth]
    node = OmegaConf.select(cfg, parent) if parent else cfg
    import difflib

    known = sorted(str(k) for k in node)
    close = difflib.get_close_matches(leaf, known, n=1)
    hint = f"; did you mean {(parent + '.' if parent else '') + close[0]!r}?" if close else ""
    where = f"in {parent}" if parent else "at the top level"
    return (f"bad configuration: unknown setting {key!r}{hint} (known {where}: "
            f"{', '.join(known)}; --help lists every setting)")


def typed_config(schema: type[T], cfg: Any) -> T:
    """``cfg`` (a composed config, a dict or already a ``schema``) as the command's typed
    schema (a dataclass), its values checked once by the schema's ``validate()``; wrong types,
    unknown keys and bad values end in one line."""
    from omegaconf.errors import OmegaConfBaseException

    if isinstance(cfg, schema):
        typed = cfg
    else:
        try:
            typed = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(schema), cfg))
        except OmegaConfBaseException as exc:
            text = " ".join(str(exc).split()).split(" full_key:")[0]
            key = getattr(exc, "full_key", None)
            raise UserError(f"bad configuration: {f'{key}: ' if key else ''}{text}") from None
    validate = getattr(typed, "validate", None)
    if validate is not None:
        validate()
    return typed


def check_positive(section: Any, prefix: str, *names: str) -> None:
    """One line for the first of ``names`` (attributes of ``section``) that is not a finite
    number > 0 (NaN compares false both ways, so it is caught by the finiteness test)."""
    for name in names:
        value = getattr(section, name)
        if value is not None and not (0 < value < math.inf):
            raise UserError(f"{prefix}{name} must be positive and finite, got {value}")


def check_non_negative(section: Any, prefix: str, *names: str) -> None:
    """One line for the first of ``names`` (attributes of ``section``) that is not a finite
    number >= 0."""
    for name in names:
        value = getattr(section, name)
        if value is not None and not (0 <= value < math.inf):
            raise UserError(f"{prefix}{name} must be >= 0 and finite, got {value}")


MAX_SEED = 2**31 - 1  # every RNG the commands feed (numpy, torch, gymnasium, offsets) takes it


def check_device(device: str, name: str = "device") -> None:
    if device not in ("auto", "cpu", "cuda") and re.fullmatch(r"cuda:\d+", str(device)) is None:
        raise UserError(f"{name} must be auto, cpu, cuda or cuda:N, got {device!r}")


def check_seed(seed: Any, name: str = "seed") -> None:
    """Seeds are integers in [0, MAX_SEED]: negative or huge ones fail deep inside numpy/torch."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise UserError(f"{name} must be an integer in [0, {MAX_SEED}], got {seed}")


def _config_dir() -> Path:
    try:
        import configs

        return Path(configs.__file__).resolve().parent
    except ImportError:
        return CONFIG_DIR


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text.split(" Config search path:")[0] or type(exc).__name__


def run_command(main: Callable[[list[str]], int], argv: list[str] | None = None,
                interrupted: str = "the last checkpoint is kept") -> None:
    """Run ``main`` and turn user errors into one line on stderr with exit status 2;
    ``interrupted`` says what a Ctrl-C leaves behind."""
    from jepa_world.training.config_help import HelpShown

    argv = sys.argv[1:] if argv is None else argv
    try:
        code = main(argv)
    except HelpShown:
        code = 0
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        code = 2
    except KeyboardInterrupt:
        print(f"interrupted: {interrupted}", file=sys.stderr)
        code = 130
    except OSError as exc:  # a full disk, a permission: every file written so far is whole
        from jepa_world.files import describe_os_error

        print(f"error: {describe_os_error(exc)}", file=sys.stderr)
        code = 1
    sys.exit(code)
