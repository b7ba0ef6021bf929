"""The files of a world model's folder (what ``WorldModel.save`` writes and its parts read)."""

WEIGHTS, CONFIG, PROVENANCE = "weights.safetensors", "config.json", "provenance.json"
READOUT_DIR = "readout"  # a state readout fitted on the model's latents (jepa_world.readout)
