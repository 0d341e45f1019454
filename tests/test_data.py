"""The data directory: resolver, verify, require, fetch (local HTTP and file://), the colour
converter and the ``vai data`` commands, all on real files in temporary folders.

The benchmark data itself is read from the workspace's shared data folder (never copied into the
repository); tests that need it are skipped with a reason when it is absent.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import hashlib
import http.server
import json
import os
import shutil
import socket
import threading
import zipfile
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from vai.data import commands, registry, store
from vai.data.convert import colors_to_json, convert_colors_pt
from vai.errors import UserError


def _shared_data() -> Path:
    override = os.environ.get("VAI_TEST_DATA")
    if override:
        return Path(override)
    return Path(__file__).resolve().parents[1].parent / "shared" / "data"


SHARED = _shared_data()
needs_shared = pytest.mark.skipif(
    not (SHARED / "MANIFEST.sha256").is_file(),
    reason=f"shared benchmark data not found at {SHARED} (set VAI_TEST_DATA to its folder)",
)
DRAWERWORLD = ["drawerworld/blanket.png", "drawerworld/fabric.png"]
COLORS = ["colors/color_easy.json", "colors/color_hard.json"]


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test may read the user's real data dir or cache through the environment."""
    monkeypatch.delenv(store.ENV_VAR, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))


def _copy(files: list[str], dest: Path, source: Path = SHARED) -> Path:
    """Copy data-dir-relative ``files`` from ``source`` into ``dest`` (writable copies)."""
    for rel in files:
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source / rel, target)
    return dest


def _flip_byte(path: Path, offset: int = 100) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def _files_under(root: Path) -> list[str]:
    """Every file below ``root`` (hidden ones too), relative, so leftovers are visible."""
    if not root.exists():
        return []
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib name
        pass


@contextlib.contextmanager
def _serve(folder: Path) -> Iterator[str]:
    """Serve ``folder`` over HTTP on 127.0.0.1 (free port) for the duration of a test."""
    handler = functools.partial(_QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture
def shared_http() -> Iterator[str]:
    """The shared data folder over a local HTTP server."""
    with _serve(SHARED) as url:
        yield url


# --- registry --------------------------------------------------------------------------------


def test_registry_names_and_rules() -> None:
    names = ("colors", "video_easy", "video_hard", "drawerworld", "places365", "photos", "backgrounds")
    assert registry.dataset_names() == names
    video_hard = {f.path for f in registry.get_dataset("video_hard").files}
    assert video_hard == {f"video_hard/video{i}.mp4" for i in range(30, 60)}  # never 60-99
    video_easy = {f.path for f in registry.get_dataset("video_easy").files}
    assert video_easy == {f"video_easy/video{i}.mp4" for i in (0, 1, 2, 6, 8, 9)}
    assert all(registry.get_dataset(n).local_only for n in ("places365", "photos", "backgrounds"))
    for dataset in registry.DATASETS:
        for entry in dataset.files:
            assert entry.path.startswith(dataset.folder + "/")
            assert entry.url.startswith("https://raw.githubusercontent.com/")
    with pytest.raises(UserError, match="unknown data set 'nope': choose from colors, video_easy"):
        registry.get_dataset("nope")


@needs_shared
def test_registry_matches_shared_manifest() -> None:
    manifest = {}
    for line in (SHARED / "MANIFEST.sha256").read_text().splitlines():
        sha256, rel = line.split()
        manifest[rel] = sha256
    in_code = {f.path: f.sha256 for d in registry.DATASETS for f in d.files}
    assert in_code == manifest


# --- resolver --------------------------------------------------------------------------------


def test_resolver_precedence(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert store.resolve_data_dir() == tmp_path / "xdg-cache" / "vai" / "data"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert store.resolve_data_dir() == tmp_path / "home" / ".cache" / "vai" / "data"
    monkeypatch.setenv(store.ENV_VAR, str(tmp_path / "from-env"))
    assert store.resolve_data_dir() == tmp_path / "from-env"
    assert store.resolve_data_dir(tmp_path / "explicit") == tmp_path / "explicit"
    assert store.resolve_data_dir(str(tmp_path / "explicit")) == tmp_path / "explicit"
    assert store.resolve_data_dir("") == tmp_path / "from-env"  # an empty flag is "not given"
    monkeypatch.chdir(tmp_path)
    assert store.resolve_data_dir("rel") == tmp_path / "rel"  # made absolute
    assert store.dataset_path("video_easy", "rel") == tmp_path / "rel" / "video_easy"


# --- verify and require ----------------------------------------------------------------------


@needs_shared
def test_verify_shared_data_is_whole() -> None:
    # The shared folder holds every data set except places365, which users provide themselves.
    for name in [n for n in registry.dataset_names() if n != "places365"]:
        checks = store.verify(name, SHARED)
        assert checks and all(c.status is store.Status.OK for c in checks), (name, checks)


@needs_shared
def test_verify_detects_flipped_byte_and_missing_file(tmp_path: Path) -> None:
    root = _copy(DRAWERWORLD + COLORS, tmp_path / "data")
    assert [c.status for c in store.verify("drawerworld", root)] == [store.Status.OK] * 2
    _flip_byte(root / "drawerworld/fabric.png")
    (root / "colors/color_hard.json").unlink()
    by_path = {c.path: c for c in store.verify("drawerworld", root) + store.verify("colors", root)}
    assert by_path["drawerworld/blanket.png"].status is store.Status.OK
    assert by_path["drawerworld/fabric.png"].status is store.Status.CORRUPTED
    assert by_path["colors/color_easy.json"].status is store.Status.OK
    assert by_path["colors/color_hard.json"].status is store.Status.MISSING


def test_verify_local_only(tmp_path: Path) -> None:
    [check] = store.verify("backgrounds", tmp_path)
    assert check.status is store.Status.MISSING
    (tmp_path / "backgrounds").mkdir()
    (tmp_path / "backgrounds" / ".hidden").write_bytes(b"x")
    assert store.verify("backgrounds", tmp_path)[0].status is store.Status.MISSING
    (tmp_path / "backgrounds" / "a.jpg").write_bytes(b"not checked")
    assert store.verify("backgrounds", tmp_path)[0].status is store.Status.OK


def test_require_missing_names_data_set_and_fetch_command(tmp_path: Path) -> None:
    root = tmp_path / "data"
    with pytest.raises(UserError) as caught:
        store.require("video_easy", root)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"data set 'video_easy' not found in {root / 'video_easy'}: ")
    assert f"run 'vai data fetch video_easy --data-dir {root}'" in message
    assert "VAI_DATA_DIR" in message
    with pytest.raises(UserError, match="unknown data set 'video'"):
        store.require("video", root)


def test_require_fetch_command_omits_data_dir_when_it_is_the_resolved_one(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(store.ENV_VAR, str(tmp_path))
    with pytest.raises(UserError, match=r"run 'vai data fetch drawerworld' \(or set VAI_DATA_DIR"):
        store.require("drawerworld")


@needs_shared
def test_require_present_partial_and_named_files(tmp_path: Path) -> None:
    assert store.require("video_hard", SHARED) == SHARED / "video_hard"
    assert store.require("backgrounds", SHARED) == SHARED / "backgrounds"
    root = _copy(["drawerworld/blanket.png"], tmp_path)
    assert store.require("drawerworld", root, files=["blanket.png"]) == root / "drawerworld"
    with pytest.raises(UserError, match="'drawerworld' is missing drawerworld/fabric.png in"):
        store.require("drawerworld", root)
    with pytest.raises(UserError, match="has no file 'video3.mp4': it has video0.mp4"):
        store.require("video_easy", SHARED, files=["video3.mp4"])
    with pytest.raises(UserError, match="'backgrounds' not found in .*no checksummed download"):
        store.require("backgrounds", tmp_path)
    with pytest.raises(UserError, match="'places365' not found in .*extract its train/ folder here"):
        store.require("places365", tmp_path)


# --- fetch -----------------------------------------------------------------------------------


@needs_shared
def test_fetch_over_http(shared_http: str, tmp_path: Path) -> None:
    root = tmp_path / "data"
    for name in ("drawerworld", "colors"):
        results = store.fetch(name, root, mirror=shared_http)
        assert {r.action for r in results} == {"fetched"}
        assert all(c.status is store.Status.OK for c in store.verify(name, root))
    assert _files_under(root) == sorted(COLORS + DRAWERWORLD)  # no temporaries left
    again = store.fetch("drawerworld", root, mirror=shared_http)
    assert {r.action for r in again} == {"present"}


@needs_shared
def test_fetch_from_file_url_replaces_corrupted_copy(tmp_path: Path) -> None:
    root = _copy(DRAWERWORLD, tmp_path / "data")
    _flip_byte(root / "drawerworld/blanket.png")
    results = store.fetch("drawerworld", root, mirror=SHARED.as_uri())
    assert [(r.path, r.action) for r in results] == [
        ("drawerworld/blanket.png", "fetched"),
        ("drawerworld/fabric.png", "present"),
    ]
    assert all(c.status is store.Status.OK for c in store.verify("drawerworld", root))
    # A plain folder path works as a mirror too.
    store.fetch("colors", root, mirror=str(SHARED))
    assert all(c.status is store.Status.OK for c in store.verify("colors", root))


@needs_shared
def test_fetch_from_corrupted_mirror_leaves_nothing(tmp_path: Path) -> None:
    mirror = _copy(DRAWERWORLD, tmp_path / "mirror")
    _flip_byte(mirror / "drawerworld/fabric.png")
    root = tmp_path / "data"
    with _serve(mirror) as http_mirror:
        for base in (mirror.as_uri(), http_mirror):
            with pytest.raises(UserError) as caught:
                store.fetch("drawerworld", root, mirror=base)
            message = str(caught.value)
            assert "\n" not in message
            assert message.startswith(f"checksum mismatch for drawerworld/fabric.png from {base}/")
            assert "nothing was saved" in message
            # The good file is in place and verified; the bad one and every temporary are gone.
            assert _files_under(root) == ["drawerworld/blanket.png"]
            (root / "drawerworld/blanket.png").unlink()


@needs_shared
def test_fetch_network_errors_are_one_line_user_errors(tmp_path: Path) -> None:
    empty = tmp_path / "empty-mirror"
    empty.mkdir()
    root = tmp_path / "data"
    not_found = r"could not download http://\S+/drawerworld/blanket\.png: HTTP 404"
    with _serve(empty) as base, pytest.raises(UserError, match=not_found):
        store.fetch("drawerworld", root, mirror=base)
    with socket.socket() as probe:  # a port nobody listens on once closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    refused = f"could not download http://127.0.0.1:{port}/drawerworld/blanket.png: "
    with pytest.raises(UserError, match=refused):
        store.fetch("drawerworld", root, mirror=f"http://127.0.0.1:{port}")
    with pytest.raises(UserError, match="could not download file://"):
        store.fetch("drawerworld", root, mirror=empty.as_uri())
    with pytest.raises(UserError, match="unsupported mirror 'ftp://x'"):
        store.fetch("drawerworld", root, mirror="ftp://x")
    assert _files_under(root) == []


def test_fetch_local_only_says_user_must_provide(tmp_path: Path) -> None:
    message = "'places365' has no checksummed download: provide it in .*places365 .*Places365 site"
    with pytest.raises(UserError, match=message):
        store.fetch("places365", tmp_path, mirror=tmp_path.as_uri())
    with pytest.raises(UserError, match="'photos' has no checksummed download.*Debian packages"):
        store.fetch("photos", tmp_path)


# --- colour conversion -----------------------------------------------------------------------


def _upstream_like_pt(settings: list[dict], path: Path, legacy_numpy_names: bool = False) -> Path:
    """A torch pickle shaped like DMControl-GB's: a list of dicts of float32 numpy arrays.

    With ``legacy_numpy_names``, the pickle names ``numpy.core.multiarray`` as numpy 1 (which
    wrote the upstream files) did, instead of numpy 2's ``numpy._core.multiarray``.
    """
    import numpy as np
    import torch

    torch.save([{k: np.asarray(v, dtype=np.float32) for k, v in s.items()} for s in settings], path)
    if legacy_numpy_names:
        with zipfile.ZipFile(path) as archive:
            members = {info.filename: archive.read(info) for info in archive.infolist()}
        with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
            for member, data in members.items():
                if member.endswith("data.pkl"):
                    data = data.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
                archive.writestr(member, data)
    return path


@needs_shared
@pytest.mark.parametrize("name", ["color_easy", "color_hard"])
def test_colour_conversion_reproduces_manifest_sha256(name: str, tmp_path: Path) -> None:
    pytest.importorskip("torch")
    shared = SHARED / "colors" / f"{name}.json"
    settings = json.loads(shared.read_bytes())
    assert len(settings) == 100
    expected = registry.get_dataset("colors").files[0 if name == "color_easy" else 1].sha256
    for legacy in (False, True):
        pt = _upstream_like_pt(settings, tmp_path / f"{name}-{legacy}.pt", legacy)
        assert hashlib.sha256(convert_colors_pt(pt)).hexdigest() == expected


@needs_shared
def test_fetch_converts_upstream_pickle(tmp_path: Path) -> None:
    """The non-mirror path: download a .pt, convert, check the JSON's sha256, move into place."""
    pytest.importorskip("torch")
    entry = registry.get_dataset("colors").files[0]
    settings = json.loads((SHARED / entry.path).read_bytes())
    pt = _upstream_like_pt(settings, tmp_path / "color_easy.pt")
    root = tmp_path / "data"
    result = store.fetch_file(replace(entry, url=pt.as_uri()), root)
    assert result.action == "fetched"
    assert (root / entry.path).read_bytes() == (SHARED / entry.path).read_bytes()
    # Different colours convert fine but fail the checksum, and nothing is left behind.
    settings[0]["self_rgb"] = [0.5, 0.5, 0.5]
    (root / entry.path).unlink()
    _upstream_like_pt(settings, pt)
    with pytest.raises(UserError, match="checksum mismatch for colors/color_easy.json"):
        store.fetch_file(replace(entry, url=pt.as_uri()), root)
    assert _files_under(root) == []
    # A file that is not a colour pickle is refused without running anything.
    pt.write_bytes(b"not a pickle")
    with pytest.raises(UserError, match="cannot convert file://"):
        store.fetch_file(replace(entry, url=pt.as_uri()), root)
    assert _files_under(root) == []


def test_colors_to_json_format_and_errors() -> None:
    setting = {
        "grid_rgb2": (0.1, 0.2, 0.3),
        "grid_rgb1": [1, 0, 0.123456789],
        "self_rgb": [0.6885, 0, 0],
        "skybox_rgb": [0, 0, 0],
        "extra": [9],
    }
    text = colors_to_json([setting]).decode()
    assert text.startswith('[\n{\n"grid_rgb1": [\n1.0,\n0.0,\n0.123457\n],\n"self_rgb": [\n0.6885,')
    assert '"extra"' not in text and text.endswith("]\n}\n]")
    with pytest.raises(ValueError, match="has no 'skybox_rgb'"):
        colors_to_json([{"grid_rgb1": [0, 0, 0], "self_rgb": [0, 0, 0], "grid_rgb2": [0, 0, 0]}])
    with pytest.raises(ValueError, match="2 channels"):
        colors_to_json([{**setting, "self_rgb": [0, 0]}])


# --- the `vai data` commands ------------------------------------------------------------------


def _cli(argv: list[str]) -> int:
    """Run ``vai <argv>`` the way the main CLI does: parse, then ``args.func(args)``."""
    parser = argparse.ArgumentParser(prog="vai")
    sub = parser.add_subparsers(dest="command", required=True)
    commands.add_data_commands(sub)
    args = parser.parse_args(argv)
    return args.func(args)


@needs_shared
def test_cli_list_verify_fetch(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "data"
    assert _cli(["data", "list", "--data-dir", str(root)]) == 0
    out = capsys.readouterr().out
    assert f"data dir: {root}" in out
    assert all(name in out for name in registry.dataset_names())
    assert "missing" in out and "present" not in out.replace("presence", "")

    mirror = ["--mirror", SHARED.as_uri()]
    assert _cli(["data", "fetch", "drawerworld", "colors", *mirror, "--data-dir", str(root)]) == 0
    out = capsys.readouterr().out
    assert "fetched: drawerworld/fabric.png" in out and "colors: ok (2 files" in out

    assert _cli(["data", "verify", "drawerworld", "colors", "--data-dir", str(root)]) == 0
    assert capsys.readouterr().out.splitlines() == ["drawerworld: ok", "colors: ok"]

    _flip_byte(root / "drawerworld/blanket.png")
    assert _cli(["data", "verify", "drawerworld", "--data-dir", str(root)]) == 1
    out = capsys.readouterr().out
    assert "drawerworld/blanket.png: corrupted (sha256 " in out and "drawerworld: 1 of 2 bad" in out
    assert f"1 bad file(s) in {root}; run 'vai data fetch drawerworld --data-dir {root}'" in out

    assert _cli(["data", "verify", "--data-dir", str(root)]) == 1  # all sets; videos are missing
    out = capsys.readouterr().out
    assert "video_easy/video0.mp4: missing" in out and "backgrounds: not provided" in out

    assert _cli(["data", "list", "--data-dir", str(root)]) == 0
    assert "drawerworld  2      present" in capsys.readouterr().out

    with pytest.raises(UserError, match="unknown data set 'bogus'"):
        _cli(["data", "fetch", "bogus", "--data-dir", str(root)])
    with pytest.raises(UserError, match="'backgrounds' has no checksummed download"):
        _cli(["data", "fetch", "backgrounds", "--data-dir", str(root)])


@needs_shared
def test_cli_data_dir_from_environment(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv(store.ENV_VAR, str(SHARED))
    assert _cli(["data", "verify"]) == 0
    expected = [f"{n}: ok" for n in registry.dataset_names()]
    expected[expected.index("places365: ok")] = "places365: not provided (local only, optional)"
    assert capsys.readouterr().out.splitlines() == expected
    # Named, a local-only pool must be there.
    assert _cli(["data", "verify", "places365"]) == 1
    assert "places365: 1 of 1 bad" in capsys.readouterr().out
