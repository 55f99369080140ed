"""Training loops for the VAE and the DiT, with checkpoints, EMA and resumption."""
