"""`nanosora studio`: a local web app over the whole model path, with every clip graded.

grade     what a clip shows read back (probe or scenes grader) and compared with its prompt
store     the output folder: results, stories, uploads, the gallery; ids made here, never by users
uploads   uploaded images and clips: bounded, decoded, fitted to the model, or refused with why
engine    the jobs without the page: generate, compare, denoise, image-to-video, extension,
          story, gallery re-runs; input bounds
app       the Gradio page, the queue (one job per core), cancelling when a tab closes, the server
"""

from nanosora.studio.app import StudioConfig, launch, main

__all__ = ["StudioConfig", "launch", "main"]
