"""State readouts: an MLP that reads the joints off a world model's latent (``model``), and
the command that fits one (``python -m jepa_world.readout``, ``__main__``)."""

from jepa_world.readout.model import (
    ReadoutConfig,
    StateReadout,
    coordinate_errors,
    fit_readout,
    joint_features,
    periodic_coordinates,
)

__all__ = [
    "ReadoutConfig",
    "StateReadout",
    "coordinate_errors",
    "fit_readout",
    "joint_features",
    "periodic_coordinates",
]
