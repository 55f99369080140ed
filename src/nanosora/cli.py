"""`nanosora <command>`: one thin function per stage entry point.

Each command parses its arguments, builds a config, and calls the stage's ``main``; the heavy
imports happen inside the command so `nanosora --help` stays fast.
"""

from __future__ import annotations

import typer

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="nanosora: a Sora-style text-to-video system that trains on a CPU in minutes.",
)


# ---- data: ingest / clips (real datasets) ---------------------------------------------------


# ---- end of data commands ---------------------------------------------------------------------


if __name__ == "__main__":
    app()
