"""Application layer: use cases, dispatcher, settings, CLI and the composition root."""
