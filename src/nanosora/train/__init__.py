"""Training: one loop (loop.py) serves the VAE and the DiT trainers, with checkpoints, EMA,
resumption and data parallelism applied from outside the models."""
