"""Decoding benchmark videos into frames at render size, once per process."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np

from vai.data.store import damaged_data


def read_video(path: Path, size: int) -> np.ndarray:
    """All frames of a video as uint8 (T, size, size, 3) RGB, resized like DMControl-GB (whole frame).

    A missing, truncated or otherwise undecodable file is a :class:`UserError` naming the fix, and
    FFmpeg's own lines about it are not printed (:func:`quiet_ffmpeg`).
    """
    quiet_ffmpeg()
    import cv2  # OpenCV is heavy to import; only video modes need it.

    if not path.is_file():
        raise damaged_data(path, f"video {path} is missing")
    capture = cv2.VideoCapture(str(path))
    frames = []
    try:
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            frame = cv2.resize(frame, (size, size), interpolation=cv2.INTER_AREA)
            frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
    finally:
        capture.release()
    if not frames:
        raise damaged_data(path, f"cannot decode video {path}")
    return np.stack(frames)


FFMPEG_LOG_LEVEL = "OPENCV_FFMPEG_LOGLEVEL"
"""OpenCV's variable for FFmpeg's log level, read when its FFmpeg backend is first used."""


def quiet_ffmpeg() -> None:
    """Keep FFmpeg from printing (OpenCV lets it print errors such as "moov atom not found" for a cut
    video) unless ``OPENCV_FFMPEG_LOGLEVEL`` is set: vai says in one line what a video's fault means.
    Acts when called before the process first reads or writes a video with OpenCV."""
    os.environ.setdefault(FFMPEG_LOG_LEVEL, "-8")  # AV_LOG_QUIET


class VideoCache:
    """Decoded videos by (path, size), shared by every environment that is handed the same cache.

    Each video is decoded the first time it is used and then held at render size (a 500-frame clip at
    100x100 is 15 MB). Environments on several threads may share one cache: each video is decoded
    once, and different videos decode at the same time.
    """

    def __init__(self) -> None:
        self._videos: dict[tuple[Path, int], np.ndarray] = {}
        self._locks: dict[tuple[Path, int], threading.Lock] = {}
        self._guard = threading.Lock()

    def get(self, path: Path, size: int) -> np.ndarray:
        key = (Path(path).resolve(), size)
        with self._guard:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            if key not in self._videos:
                self._videos[key] = read_video(key[0], size)
            return self._videos[key]

    def __len__(self) -> int:
        return len(self._videos)
