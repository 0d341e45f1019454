"""Which data files each test mode reads, found through the data directory (never bundled)."""

from __future__ import annotations

import re
from pathlib import Path

from vai.data.store import require, resolve_data_dir

_VIDEO_NUMBER = re.compile(r"video(\d+)\.mp4")


def _videos(folder: Path) -> list[Path]:
    """The folder's ``videoN.mp4`` files in the order of N."""
    found = [(int(m.group(1)), p) for p in folder.glob("video*.mp4") if (m := _VIDEO_NUMBER.fullmatch(p.name))]
    return [path for _, path in sorted(found)]


def easy_videos(data_dir: Path | None) -> list[Path]:
    """The ``video_easy`` set: the sky of ``video_easy`` episodes, in turn."""
    return _videos(require("video_easy", resolve_data_dir(data_dir)))


def hard_videos(data_dir: Path | None) -> list[Path]:
    """The ``video_hard`` development split: the whole background of ``video_hard`` episodes."""
    return _videos(require("video_hard", resolve_data_dir(data_dir)))


def easy_video(number: int, data_dir: Path | None) -> Path:
    """Video ``number`` of the easy set (VAI evaluates seed i on video i); only that file is needed."""
    return require("video_easy", resolve_data_dir(data_dir), files=[f"video{number}.mp4"]) / f"video{number}.mp4"


def colors_file(mode: str, data_dir: Path | None) -> Path | None:
    """DMControl-GB's colour set for ``mode`` if the data directory has it, else None."""
    path = resolve_data_dir(data_dir) / "colors" / f"{mode}.json"
    return path if path.is_file() else None


def mode_videos(mode: str, data_dir: Path | None) -> list[Path]:
    """The videos ``mode`` plays in turn (none outside the video modes); a UserError names the data
    set and the fetch command if they are missing."""
    from vai.tasks import video_number

    if mode == "video_easy":
        return easy_videos(data_dir)
    if mode == "video_hard":
        return hard_videos(data_dir)
    number = video_number(mode)
    return [easy_video(number, data_dir)] if number is not None else []


def check_mode_data(mode: str, data_dir: Path | None) -> None:
    """Fail early, naming the data set and the fetch command, if ``mode`` lacks its data."""
    mode_videos(mode, data_dir)
