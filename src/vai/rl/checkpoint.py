"""Agent checkpoints: everything needed to act again (``vai eval``) or to go on training (``--resume``).

One file per checkpoint (``torch.save`` of plain tensors, numbers and strings, read back with
``weights_only=True``, so loading never runs code from the file): the agent's construction arguments
(algorithm, task, preset, shapes, encoder layers, adapter architecture), its weights including the
frozen adapter, optimiser states, random states and the loop's counters. Written atomically, with
the SHA-256 of the agent's weights, so that a damaged file is refused instead of acting at random.
"""

from __future__ import annotations

import dataclasses
import os
import zipfile
from pathlib import Path
from typing import Any

import torch

from vai.atomic import atomic_write
from vai.config import RLPreset
from vai.digest import DIGEST_KEY, digest_mismatch, tensors_digest
from vai.errors import UserError

FORMAT = "vai.agent"
VERSION = 2
"""2: settings in agent steps (``train_steps``) and VAI's PAD heads (two hidden layers, the reward head
on (h, h')); version 1 counted frames and had other heads, so its checkpoints are refused."""


def save_checkpoint(agent, path: str | os.PathLike, task: str, loop_state: dict[str, Any]) -> Path:
    """Write ``agent`` and the loop's ``loop_state`` (counters, random states) to ``path``."""
    adapter = agent.observe.adapter
    weights = agent.state_dict()
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "task": task,
        "algorithm": agent.algorithm,
        "preset": dataclasses.asdict(agent.preset),
        "obs_shape": list(agent.obs_shape),
        "action_dim": agent.action_dim,
        "layers": list(agent.layers),
        "adapter_config": adapter.config if adapter is not None else None,
        "agent": weights,
        DIGEST_KEY: tensors_digest(weights),
        "optimizers": {name: optimizer.state_dict() for name, optimizer in agent.optimizers().items()},
        "generator": agent.generator.get_state(),
        "loop": loop_state,
    }
    return atomic_write(path, lambda temporary: torch.save(payload, temporary))


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    path = Path(path)
    fix = "pass a checkpoint written by 'vai train' (RUN/checkpoints/last.pt)"
    if not path.is_file():
        raise UserError(f"checkpoint {path} not found: {fix}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for damaged files
        if not zipfile.is_zipfile(path):
            raise UserError(f"checkpoint {path} is unreadable (not a torch checkpoint archive): {fix}") from None
        first_line = (str(error).splitlines() or [type(error).__name__])[0][:160]
        raise UserError(f"checkpoint {path} is unreadable ({first_line}): {fix}") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise UserError(f"{path} is not a vai agent checkpoint (version {VERSION}): {fix}")
    if payload.get("version") != VERSION:
        raise UserError(
            f"{path} is a version {payload.get('version')} agent checkpoint, from a vai whose settings counted "
            f"frames and whose PAD heads had other shapes; this vai reads version {VERSION}: train the agent "
            "again into another --out (vai run: --fresh)"
        )
    if not isinstance(payload.get("agent"), dict) or digest_mismatch(payload["agent"], payload):
        raise UserError(f"checkpoint {path} is damaged (its weights fail their checksum): {fix}")
    return payload


def load_agent(path: str | os.PathLike, device: str | torch.device = "cpu", with_optimizers: bool = False):
    """The agent stored at ``path`` on ``device`` and the checkpoint's contents (``loop``, ``task``...)."""
    from vai.rl.sac import SACAgent
    from vai.vision.adapter import AttentionAdapter

    payload = read_checkpoint(path)
    try:
        # A checkpoint from before ``adapter_per_crop`` existed stored adapted frames (the stored form).
        preset = RLPreset(**{"adapter_per_crop": False, **payload["preset"]})
        adapter = AttentionAdapter(**payload["adapter_config"]) if payload["adapter_config"] else None
        agent = SACAgent(
            payload["algorithm"],
            tuple(payload["obs_shape"]),
            payload["action_dim"],
            preset,
            tuple(payload["layers"]),
            adapter=adapter,
            device=device,
        )
        agent.load_state_dict(payload["agent"])
        if with_optimizers:
            for name, optimizer in agent.optimizers().items():
                optimizer.load_state_dict(payload["optimizers"][name])
            agent.generator.set_state(payload["generator"])
    except (KeyError, TypeError, ValueError, RuntimeError) as error:
        first_line = (str(error).splitlines() or [type(error).__name__])[0][:160]
        raise UserError(f"checkpoint {path} does not fit this version of vai ({first_line})") from None
    return agent, payload
