"""Model storage: checkpoints, installed models, model packages and their human-readable cards."""
