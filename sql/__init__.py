"""Package data: read with importlib.resources (tagger.resources)."""
