"""The HTTP API at /api/v1: requests from pipelines, agents and scripts."""
