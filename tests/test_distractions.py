"""The pieces behind the test modes: colour textures, the colour generator, videos, mask look-up."""

from __future__ import annotations

import json

import numpy as np
import pytest

import vai  # noqa: F401  (chooses the GL backend before MuJoCo is imported)
from vai.data.video import VideoCache, read_video
from vai.errors import UserError


@pytest.fixture(scope="module")
def walker():
    env = vai.make_env("walker_walk", seed=0)
    yield env.unwrapped
    env.close()


def test_suite_default_colours_rebuild_the_suite_textures_exactly(walker):
    """Regenerating grid and skybox from the suite's own colours must give the loaded bytes back."""
    from vai.envs.distractions import DEFAULT_COLORS, ColorRandomizer

    model = walker._model
    original = model.tex_data.copy()
    colors = ColorRandomizer(model, walker._renderer, [{k: np.array(v) for k, v in DEFAULT_COLORS.items()}])
    colors.apply(0)
    assert np.array_equal(model.tex_data, original)


def test_a_colour_setting_changes_textures_and_restore_undoes_it(walker):
    from vai.envs.distractions import ColorRandomizer, generate_colors

    model = walker._model
    original_textures = model.tex_data.copy()
    original_rgba = model.mat_rgba.copy()
    colors = ColorRandomizer(model, walker._renderer, generate_colors("color_hard", count=2, seed=3))
    colors.apply(1)
    assert not np.array_equal(model.tex_data, original_textures)
    self_material = 1  # materials: grid, self, ...
    assert np.allclose(model.mat_rgba[self_material, :3], colors.settings[1]["self_rgb"])
    colors.restore()
    assert np.array_equal(model.tex_data, original_textures)
    assert np.array_equal(model.mat_rgba, original_rgba)


@pytest.mark.parametrize("mode", ["color_easy", "color_hard"])
def test_generator_matches_the_published_colour_sets(mode, data_dir):
    """Per key, the generator's mean and spread are those of DMControl-GB's set (within noise)."""
    from vai.envs.distractions import COLOR_KEYS, generate_colors, load_colors

    published = load_colors(data_dir / "colors" / f"{mode}.json")
    generated = generate_colors(mode, count=2000, seed=0)
    for key in COLOR_KEYS:
        real = np.stack([s[key] for s in published])
        ours = np.stack([s[key] for s in generated])
        assert np.all(np.abs(real.mean(0) - ours.mean(0)) < 0.06), key
        assert np.all(np.abs(real.std(0) - ours.std(0)) < 0.05), key
        assert ours.min() >= 0.0 and ours.max() <= 1.0
    grid_gap = np.stack([s["grid_rgb2"] - s["grid_rgb1"] for s in generated])
    assert np.all(grid_gap <= 0.1 + 1e-9)


def test_colour_set_json_loads_as_100_settings(data_dir):
    from vai.envs.distractions import COLOR_KEYS, load_colors

    settings = load_colors(data_dir / "colors" / "color_easy.json")
    assert len(settings) == 100
    assert all(set(s) == set(COLOR_KEYS) and s["self_rgb"].shape == (3,) for s in settings)
    raw = json.loads((data_dir / "colors" / "color_easy.json").read_text())
    assert np.allclose(settings[7]["skybox_rgb"], raw[7]["skybox_rgb"])


def test_videos_are_decoded_once_at_render_size(data_dir):
    cache = VideoCache()
    path = data_dir / "video_easy" / "video2.mp4"
    first = cache.get(path, 100)
    again = cache.get(path, 100)
    assert again is first and len(cache) == 1
    assert first.dtype == np.uint8 and first.shape[1:] == (100, 100, 3) and len(first) > 100
    assert not np.array_equal(first[0], first[len(first) // 2]), "the video should move"


def test_a_corrupted_video_is_a_user_error(tmp_path, data_dir):
    broken = tmp_path / "video0.mp4"
    broken.write_bytes((data_dir / "video_easy" / "video0.mp4").read_bytes()[:2000])
    with pytest.raises(UserError, match="vai data verify"):
        read_video(broken, 100)


def test_foreground_index_reads_ids_by_type():
    from vai.envs.render import ForegroundIndex

    index = ForegroundIndex(
        geoms=np.array([False, True, False]), sites=np.array([True]), tendons=np.array([False, True])
    )
    geom, site, tendon, nothing, light = 5, 6, 18, -1, 3
    segments = np.array(
        [
            [[0, geom], [1, geom], [2, geom]],
            [[0, site], [1, tendon], [0, tendon]],
            [[-1, nothing], [0, light], [1, geom]],
        ]
    )
    expected = np.array([[False, True, False], [True, True, False], [False, False, True]])
    assert np.array_equal(index(segments), expected)
