"""PAD's self-supervised heads (Hansen et al., ICLR 2021) on the encoder layers shared with the agent.

Each head reads features from an encoder whose first ``num_shared_layers`` convs are the critic's
(tied), with its own remaining convs and projection. Training the heads with the agent shapes the
shared layers; at test time the same losses, which need no reward, update them on the test
environment's own frames (test-time adaptation), while the actor and critic stay fixed.

- ``inverse``: predict the action from features of obs and next_obs (squared error).
- ``reward``: predict the reward from features of obs and next_obs (squared error; training only,
  since a reward signal is not self-supervision at test time).
- ``rotation``: predict which of 0/90/180/270 degrees a crop was rotated by (cross entropy).

Every head is an MLP with two hidden ReLU layers of ``hidden_dim`` (VAI's ``InvFunction``,
``RewardFunction``, ``RotFunction``); the losses of one step are summed and take one optimiser step
(VAI's ``update_inv_and_rewards``).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from vai.rl.encoder import PixelEncoder, mlp

TEST_TIME_TASKS = ("inverse", "rotation")
"""Heads whose loss needs no reward, so PAD can run them on test episodes."""


class AuxiliaryHeads(nn.Module):
    def __init__(self, encoder: PixelEncoder, tasks: tuple[str, ...], action_dim: int, hidden_dim: int):
        super().__init__()
        self.encoder, self.tasks = encoder, tasks
        features = encoder.feature_dim
        self.heads = nn.ModuleDict()
        if "inverse" in tasks:
            self.heads["inverse"] = mlp(2 * features, hidden_dim, action_dim)
        if "reward" in tasks:
            self.heads["reward"] = mlp(2 * features, hidden_dim, 1)
        if "rotation" in tasks:
            self.heads["rotation"] = mlp(features, hidden_dim, 4)

    def losses(
        self,
        obs: torch.Tensor,
        action: torch.Tensor,
        reward: torch.Tensor | None,
        next_obs: torch.Tensor,
        tasks: tuple[str, ...] | None = None,
        generator: torch.Generator | None = None,
        augment: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> dict[str, torch.Tensor]:
        """Loss per head (``tasks`` or all) on float views (B, C, S, S); ``augment``, if given, is
        applied to the input of every encoder pass (a fresh draw each, as VAI's encoder augments)."""
        tasks = self.tasks if tasks is None else tasks

        def encode(images: torch.Tensor) -> torch.Tensor:
            return self.encoder(augment(images) if augment is not None else images)

        losses = {}
        if "inverse" in tasks or ("reward" in tasks and reward is not None):
            both = torch.cat([encode(obs), encode(next_obs)], dim=1)  # (h, h')
            if "inverse" in tasks:
                losses["inverse"] = F.mse_loss(self.heads["inverse"](both), action)
            if "reward" in tasks and reward is not None:
                losses["reward"] = F.mse_loss(self.heads["reward"](both), reward)
        if "rotation" in tasks:
            rotated, label = rotate(obs, generator)
            losses["rotation"] = F.cross_entropy(self.heads["rotation"](encode(rotated)), label)
        return losses


def rotate(images: torch.Tensor, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Each square image rotated by a random multiple of 90 degrees, and that multiple (0-3)."""
    label = torch.randint(0, 4, (images.shape[0],), generator=generator, device=images.device)
    turns = torch.stack([torch.rot90(images, k, dims=(2, 3)) for k in range(4)])  # (4, B, C, S, S)
    return turns[label, torch.arange(images.shape[0], device=images.device)], label
