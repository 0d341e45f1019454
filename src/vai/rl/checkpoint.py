"""Agent checkpoints: everything needed to act again (``vai eval``) or to go on training (``--resume``).

One file per checkpoint (``torch.save`` of plain tensors, numbers and strings, read back with
``weights_only=True``, so loading never runs code from the file): the agent's construction arguments
(algorithm, task, preset, shapes, encoder layers, adapter architecture), its weights including the
frozen adapter, optimiser states, random states and the loop's counters. Written and checked by
:mod:`vai.checkpoints`, with the SHA-256 of the agent's weights, so that a damaged file is refused
instead of acting at random.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import torch

from vai.checkpoints import CheckpointFormat, load_payload, save_payload
from vai.presets.rl import preset_from_record

CHECKPOINT = CheckpointFormat(
    name="vai.agent",
    version=2,
    kind="agent checkpoint",
    fix="pass a checkpoint written by 'vai train' (RUN/checkpoints/last.pt), or train again into another --out "
    "(vai run: --fresh)",
    changes="settings counted in agent steps, not frames, and VAI's PAD heads",
)
"""An agent's files: ``torch.save`` dictionaries (below) with the format, the version and the weights' checksum.
Version 2 has VAI's PAD heads: two hidden layers, the reward head on (h, h')."""


def save_checkpoint(agent, path: str | os.PathLike, task: str, loop_state: dict[str, Any]) -> Path:
    """Write ``agent`` and the loop's ``loop_state`` (counters, random states) to ``path``."""
    adapter = agent.observe.adapter
    payload = {
        "task": task,
        "algorithm": agent.algorithm,
        "preset": dataclasses.asdict(agent.preset),
        "obs_shape": list(agent.obs_shape),
        "action_dim": agent.action_dim,
        "layers": list(agent.layers),
        "adapter_config": adapter.config if adapter is not None else None,
        "agent": agent.state_dict(),
        "optimizers": {name: optimizer.state_dict() for name, optimizer in agent.optimizers().items()},
        "generator": agent.generator.get_state(),
        "loop": loop_state,
    }
    return save_payload(CHECKPOINT, payload, "agent", path)


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """The contents of the checkpoint at ``path``, its format, version and weights checked."""
    return load_payload(CHECKPOINT, "agent", path)


def load_agent(path: str | os.PathLike, device: str | torch.device = "cpu", with_optimizers: bool = False):
    """The agent stored at ``path`` on ``device`` and the checkpoint's contents (``loop``, ``task``...)."""
    from vai.rl.sac import SACAgent
    from vai.vision.adapter import AttentionAdapter

    payload = read_checkpoint(path)
    try:
        preset = preset_from_record(payload["preset"])
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
        raise CHECKPOINT.mismatch(path, error) from None
    return agent, payload
