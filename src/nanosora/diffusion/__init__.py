"""Rectified-flow diffusion as pure functions."""
