"""The documentation: the site builds with warnings as errors, every Python snippet in the
README and the docs runs as written, and every documented command names a real module and
settings its config knows."""

from __future__ import annotations

import importlib.util
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from jepa_world.training.cli import COMMANDS, UserError, load_config

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^( *)```(\w+)\n(.*?)^\1```", re.M | re.S)
HYDRA_MODULES = {module: name for name, (module, _) in COMMANDS.items()}
PLACEHOLDER = re.compile(r"\b[A-Z][A-Z_]{1,}\b|\.\.\.|\[-")


def snippets(language: str) -> list[tuple[str, str]]:
    found = []
    for page in PAGES:
        for index, match in enumerate(m for m in FENCE.finditer(page.read_text())
                                      if m[2] == language):
            code = "\n".join(line[len(match[1]):] for line in match[3].splitlines())
            found.append((f"{page.relative_to(ROOT)}#{index}", code))
    return found


def test_the_site_builds_strict(tmp_path):
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-d",
                             str(tmp_path / "site")], cwd=ROOT, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "site" / "api" / "index.html").is_file()
    assert "WorldModel" in (tmp_path / "site" / "api" / "index.html").read_text()


@pytest.mark.parametrize("where, code", [pytest.param(w, c, id=w) for w, c in snippets("python")])
def test_python_snippets_run_as_written(where, code, small_dataset, tmp_path):
    # run from an empty folder holding what the snippets name: a recorded data/reach
    shutil.copytree(small_dataset, tmp_path / "data" / "reach")
    if "my_tasks.py" in code:  # the custom-task page's module, imported as the commands would
        (tmp_path / "my_tasks.py").write_text(code)
        code = "import my_tasks, envs\nenvs.make_task('shoulder-reacher').close()"
    env = {"PYTHONPATH": f"{tmp_path}:{ROOT}", "PATH": "/usr/bin:/bin"}
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                            text=True, timeout=300, env={**_environ(), **env})
    assert result.returncode == 0, f"{where}:\n{result.stderr[-3000:]}"


def _environ() -> dict[str, str]:
    import os

    return dict(os.environ)


def _commands() -> list[tuple[str, list[str]]]:
    found = []
    for where, code in snippets("bash"):
        for line in code.replace("\\\n", " ").splitlines():
            line = line.split(" #")[0].strip()
            if "python -m " in line and not PLACEHOLDER.search(line):
                words = shlex.split(line[line.index("python -m "):])
                found.append((where, words[2:]))
    return found


@pytest.mark.parametrize("where, words", [pytest.param(w, c, id=f"{w}:{c[0]}")
                                          for w, c in _commands()])
def test_documented_commands_name_real_modules_and_settings(where, words):
    module, args = words[0], words[1:]
    assert importlib.util.find_spec(module) is not None, f"{where}: no module {module}"
    if module not in HYDRA_MODULES:
        return
    overrides = [a for a in args if "=" in a and not a.startswith("-")]
    try:
        load_config(HYDRA_MODULES[module], overrides)
    except UserError as exc:
        pytest.fail(f"{where}: python -m {module} {' '.join(args)}: {exc}")


@pytest.mark.parametrize("module", ["envs.collect", "jepa_world.build", "jepa_world.readout",
                                    "planners.swm_eval", "planners.plot",
                                    "jepa_world.study label-efficiency"])
def test_every_argparse_command_help_points_to_an_existing_docs_page(module):
    command = module.split()
    result = subprocess.run([sys.executable, "-m", *command, "--help"], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    page = re.search(r"docs: (docs/[\w-]+\.md)", " ".join(result.stdout.split()))
    assert page and (ROOT / page[1]).is_file(), result.stdout[-300:]
    assert "(default: None)" not in result.stdout
    # and a missing argument is one "error:" line, as for the Hydra commands (no usage block)
    from tests.conftest import assert_one_line_error

    assert_one_line_error(subprocess.run([sys.executable, "-m", *command, "--no-such-flag"],
                                         cwd=ROOT, capture_output=True, text=True, timeout=120),
                          f"see python -m {module} --help")


def test_the_hydra_commands_docs_pages_exist():
    for module, page in COMMANDS.values():
        assert (ROOT / page.split("#")[0]).is_file(), (module, page)
