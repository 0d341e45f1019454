"""Checkpoint files: header, version and checksum written and checked alike for every kind of checkpoint."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import damaged_copy
from safetensors import safe_open

from vai.checkpoints import CheckpointFormat, load_payload, load_tensors, save_payload, save_tensors
from vai.errors import UserError

FORMAT = CheckpointFormat(name="vai.test", version=3, kind="test checkpoint", fix="write it again", changes="news")
TENSORS = {"weight": torch.arange(6, dtype=torch.float32).reshape(2, 3), "bias": torch.ones(3)}


def metadata_of(path) -> dict[str, str]:
    with safe_open(str(path), framework="pt") as reader:
        return reader.metadata()


def test_tensors_and_payloads_come_back_as_written(tmp_path):
    path = save_tensors(FORMAT, TENSORS, {"size": "84"}, tmp_path / "nested" / "model.safetensors")
    tensors, metadata = load_tensors(FORMAT, path)
    assert tensors.keys() == TENSORS.keys() and all(torch.equal(tensors[k], TENSORS[k]) for k in TENSORS)
    assert metadata["size"] == "84" and (metadata["format"], metadata["version"]) == ("vai.test", "3")
    assert [p.name for p in path.parent.iterdir()] == ["model.safetensors"]  # no temporary left

    saved = save_payload(FORMAT, {"weights": TENSORS, "step": 7}, "weights", tmp_path / "agent.pt")
    payload = load_payload(FORMAT, "weights", saved)
    assert (payload["format"], payload["version"], payload["step"]) == ("vai.test", 3, 7)
    assert torch.equal(payload["weights"]["weight"], TENSORS["weight"])


def test_headers_keep_the_layout_existing_files_have():
    # The Transporter's files name their version in the format; the adapter's and the agent's beside it.
    from vai.rl.checkpoint import CHECKPOINT as AGENT
    from vai.vision.adapter import CHECKPOINT as ADAPTER
    from vai.vision.keypoints import CHECKPOINT as TRANSPORTER

    assert TRANSPORTER.header() == {"format": "vai.transporter/2"}
    assert ADAPTER.header() == {"format": "vai.attention_adapter", "version": 2}
    assert AGENT.header() == {"format": "vai.agent", "version": 2}


def test_a_version_in_the_format_name_is_read_as_the_version(tmp_path):
    tagged = CheckpointFormat("vai.test", 3, "test checkpoint", "write it again", "news", version_in_name=True)
    path = save_tensors(tagged, TENSORS, {}, tmp_path / "tagged.safetensors")
    assert metadata_of(path)["format"] == "vai.test/3" and "version" not in metadata_of(path)
    load_tensors(tagged, path)
    load_tensors(FORMAT, path)  # the same format and version, recorded the other way


def test_every_refusal_is_one_line_naming_the_file_and_the_fix(tmp_path):
    good = save_tensors(FORMAT, TENSORS, {}, tmp_path / "good.safetensors")
    header = metadata_of(good)
    refusals = {
        "absent.safetensors": "test checkpoint .*absent.safetensors not found: write it again",
        "garbage.safetensors": "test checkpoint .*garbage.safetensors is unreadable .*: write it again",
        "foreign.safetensors": "foreign.safetensors is not a vai test checkpoint .format 'other'.: write it again",
        "older.safetensors": "older.safetensors is a version 2 test checkpoint; this vai reads version 3 only "
        r"\(news\): write it again",
        "newer.safetensors": "newer.safetensors is a version 4 test checkpoint; this vai reads version 3 only: "
        "upgrade vai",
        "damaged.safetensors": "test checkpoint .*damaged.safetensors is damaged .*checksum.*: write it again",
    }
    (tmp_path / "garbage.safetensors").write_bytes(b"\x00not a checkpoint\n" * 10)
    for name, changed in (("foreign", {"format": "other"}), ("older", {"version": "2"}), ("newer", {"version": "4"})):
        save_tensors_as(tmp_path / f"{name}.safetensors", {**header, **changed})
    damaged_copy(good, tmp_path / "damaged.safetensors", -8, -4)  # in the last tensor's bytes
    for name, message in refusals.items():
        with pytest.raises(UserError, match=message) as error:
            load_tensors(FORMAT, tmp_path / name)
        assert "\n" not in str(error.value), name


def test_a_payload_without_its_weights_or_not_a_dictionary_is_refused(tmp_path):
    torch.save({"format": "vai.test", "version": 3}, tmp_path / "empty.pt")
    with pytest.raises(UserError, match="empty.pt is damaged"):
        load_payload(FORMAT, "weights", tmp_path / "empty.pt")
    torch.save([1, 2], tmp_path / "list.pt")
    with pytest.raises(UserError, match="list.pt is not a vai test checkpoint .format None."):
        load_payload(FORMAT, "weights", tmp_path / "list.pt")
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(UserError, match="junk.pt is unreadable .not a torch checkpoint archive."):
        load_payload(FORMAT, "weights", tmp_path / "junk.pt")


def test_a_file_without_a_checksum_loads_unchecked(tmp_path):
    save_tensors_as(tmp_path / "plain.safetensors", {"format": "vai.test", "version": "3"})
    tensors, _ = load_tensors(FORMAT, tmp_path / "plain.safetensors")
    assert torch.equal(tensors["bias"], TENSORS["bias"])


def save_tensors_as(path, metadata: dict[str, str]) -> None:
    """``TENSORS`` with exactly ``metadata``, as another program (or another version) would write them."""
    from safetensors.torch import save_file

    save_file(TENSORS, str(path), metadata=json.loads(json.dumps(metadata)))
