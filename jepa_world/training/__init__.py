"""Pieces shared by the training commands: config loading, runtime, checkpoints, logs."""
