"""Metrics and the evaluation report (``nanosora eval``; entry points in ``run.py``).

- ``metrics.py``: PSNR, SSIM, feature statistics and the Fréchet distance (pure functions);
- ``reconstruction.py``: a VAE on a manifest (PSNR, SSIM, perceptual distance, probe);
- ``adherence.py``: prompt adherence of a pipeline on the shapes world, confusion matrices;
- ``temporal.py``: flicker, motion smoothness, object persistence (no pretrained networks);
- ``features.py``: feature networks for Fréchet distances (local I3D for FVD; the shapes encoder
  nanosora trains itself for the Fréchet shapes distance);
- ``perceptual.py``: LPIPS-style distance from a local TorchScript network;
- ``videos.py``: all of the above for a set of videos, with a matched reference set;
- ``report.py`` / ``compare.py``: ``report.json`` + ``report.html``, and runs side by side.
"""
