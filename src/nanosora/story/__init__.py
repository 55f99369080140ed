"""Story to film: premise -> script -> shots -> keyframes -> animation -> montage.

schema      validated script.json and shots.json (errors name the shot and field)
chat        OpenAI-compatible chat client: retries, timeouts, JSON repair
planner     the offline writer: deterministic shots the model can draw
cast        the offline writer for scenes models: a cast, and one shot kind per event word
writer      writer backends (offline planner, chat model) behind one interface
translate   non-English premises and prompts -> English through the chat backend
keyframes   a still per shot: single-frame generation or the user's image
animation   a clip per shot: image-to-video from its keyframe, or text-to-video (--animate)
render      the keyframe and clip stages: batched, resumable, failures kept per shot
montage     cards, cuts and cross-fades, subtitles, audio -> H.264 mp4
storyboard  HTML page and PNG contact sheet beside the film
pipeline    `main(StoryConfig) -> Path`, the entry point of `nanosora story`
"""

from nanosora.story.pipeline import StoryConfig, main
from nanosora.story.render import RenderConfig
from nanosora.story.schema import Script, Shot, ShotList, StoryError

__all__ = ["RenderConfig", "Script", "Shot", "ShotList", "StoryConfig", "StoryError", "main"]
