"""nanosora: a Sora-style text-to-video system that trains on a CPU in minutes."""

__version__ = "0.1.0"
