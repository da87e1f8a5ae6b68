"""The static directory: people and groups written in the policy file."""
