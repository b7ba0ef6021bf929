"""Typed configuration schemas of the commands: each is validated once, at start-up."""
