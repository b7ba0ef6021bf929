"""Entry point of ``python -m jepa_world.probe``."""

from jepa_world.probe.command import main
from jepa_world.training.cli import run_command

run_command(main, interrupted="every file written so far is whole")
