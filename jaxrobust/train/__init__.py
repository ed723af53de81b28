"""Training: batches for a method, the pure jitted step, checkpoints, the loop and model selection."""
