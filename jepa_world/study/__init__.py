"""Studies that answer a user's question with trained and planned models, end to end:
``python -m jepa_world.study label-efficiency --env NAME``."""
