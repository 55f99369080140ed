"""Video files at the uint8 `(T, H, W, 3)` RGB boundary: probe, read, write mp4/GIF, contact sheets."""

from nanosora.video.io import (
    VideoError,
    VideoInfo,
    contact_sheet,
    frame_indices_for_fps,
    pad_to_even,
    probe,
    read_video,
    resize_frame,
    write_gif,
    write_video,
)

__all__ = [
    "VideoError",
    "VideoInfo",
    "contact_sheet",
    "frame_indices_for_fps",
    "pad_to_even",
    "probe",
    "read_video",
    "resize_frame",
    "write_gif",
    "write_video",
]
