"""Soft actor-critic from pixels as PAD and VAI train it (Haarnoja et al. 2018; Yarats et al.'s
SAC-AE lineage): a conv encoder trained by the critic, the actor on the critic's conv features with
its own projection, twin Q networks, a learned temperature, and PAD's self-supervised heads.

    agent = SACAgent("vai", obs_shape=(9, 100, 100), action_dim=1, preset=get_rl_preset("paper"),
                     layers=(4, 4), adapter=adapter, device="cuda", seed=0)
    action = agent.act(observation, sample=True)        # numpy in, numpy out
    metrics = agent.update(replay.sample(128, nstep=3), step)  # dict of 0-d tensors (no device sync)

Per update (every agent step after the random phase): the critic (and encoder); every
``actor_update_every`` steps the actor and temperature; every ``target_update_every`` steps the
target critic moves by ``critic_tau`` (Q heads) and ``encoder_tau`` (encoder); every
``aux_update_every`` steps PAD's heads (inverse and reward losses summed into one step, as VAI).
``svea`` evaluates the critic on the clean batch and on a randomly convolved copy, both against the
clean target (Hansen et al. 2021, Eq. 6).

Each update crops its batch once (for ``vai`` with ``adapter_per_crop``, VAI's placement, the frozen
adapter then masks each crop once: it is deterministic, so VAI's pass per encoder call gives the same
mask); for ``vai`` every encoder pass then draws its own adapt_aug of the crops, as VAI augments
inside its encoder's forward: the target's actor and critic, the critic, the actor's step (which
encodes the batch again after the critic's optimiser step, unless ``actor_reuses_critic_trunk``) and
each of the heads' passes. While :attr:`SACAgent.augmenting` (set by the training loop when
``adapt_aug_when_acting``) acting augments too; a loaded agent acts on clean views, as VAI's
``eval.py``.
"""

from __future__ import annotations

import copy
import math
import zlib
from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vai.presets.rl import RLPreset
from vai.rl.algorithms import algorithm_spec
from vai.rl.augment import random_convolution
from vai.rl.aux import AuxiliaryHeads
from vai.rl.encoder import PixelEncoder, mlp, orthogonal_init
from vai.rl.observe import ObservationPipeline
from vai.rl.replay import Batch
from vai.vision.adapter import AttentionAdapter


def nstep_return(batch: Batch, discount: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(sum of discount^k x reward_k over the return's steps, discount^m x not_done at its end): the
    critic's target is the first plus the second times the soft value of ``batch.bootstrap_obs``."""
    powers = discount ** torch.arange(batch.rewards.shape[1], device=batch.rewards.device)
    return (batch.rewards * powers).sum(1, keepdim=True), batch.bootstrap_not_done * discount**batch.bootstrap_steps


def adam(parameters, **settings) -> torch.optim.Adam:
    """Adam stepping all its parameters in one multi-tensor ("foreach") call: the same arithmetic
    per element as the one-tensor-at-a-time loop torch picks by default on a CPU (bit for bit, as
    ``tests/test_rl_speed.py`` checks), without a dozen small kernel calls per parameter."""
    return torch.optim.Adam(parameters, foreach=True, **settings)


class Actor(nn.Module):
    """Features -> tanh-squashed Gaussian policy."""

    def __init__(self, encoder: PixelEncoder, action_dim: int, hidden_dim: int, log_std_min: float, log_std_max: float):
        super().__init__()
        self.encoder = encoder
        self.trunk = mlp(encoder.feature_dim, hidden_dim, 2 * action_dim)
        self.log_std_min, self.log_std_max = log_std_min, log_std_max

    def forward(self, images: torch.Tensor, detach_shared: bool = False, generator: torch.Generator | None = None):
        """(mean action, sampled action, log prob of the sample, log std); all squashed by tanh."""
        return self.policy(self.encoder(images, detach_shared), generator)

    def mean(self, features: torch.Tensor) -> torch.Tensor:
        """The policy's mean action (squashed by tanh) from the encoder's features; draws nothing."""
        return torch.tanh(self.trunk(features).chunk(2, dim=-1)[0])

    def policy(self, features: torch.Tensor, generator: torch.Generator | None = None):
        """The same from the encoder's features."""
        mu, log_std = self.trunk(features).chunk(2, dim=-1)
        # Bounded log std (SAC-AE): tanh into [log_std_min, log_std_max].
        log_std = self.log_std_min + 0.5 * (self.log_std_max - self.log_std_min) * (torch.tanh(log_std) + 1)
        noise = torch.randn(mu.shape, generator=generator, device=mu.device)
        sample = mu + noise * log_std.exp()
        log_prob = (-0.5 * noise.pow(2) - log_std).sum(-1, keepdim=True) - 0.5 * math.log(2 * math.pi) * mu.shape[-1]
        pi, mu = torch.tanh(sample), torch.tanh(mu)
        # Change of variables through tanh.
        log_prob = log_prob - torch.log(F.relu(1 - pi.pow(2)) + 1e-6).sum(-1, keepdim=True)
        return mu, pi, log_prob, log_std


class Critic(nn.Module):
    """Twin Q networks on the encoder's features; the encoder learns from this loss."""

    def __init__(self, encoder: PixelEncoder, action_dim: int, hidden_dim: int):
        super().__init__()
        self.encoder = encoder
        self.q1 = mlp(encoder.feature_dim + action_dim, hidden_dim, 1)
        self.q2 = mlp(encoder.feature_dim + action_dim, hidden_dim, 1)

    def forward(self, images: torch.Tensor, action: torch.Tensor, detach_encoder: bool = False):
        features = self.encoder(images)
        return self.q(features.detach() if detach_encoder else features, action)

    def q(self, features: torch.Tensor, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Both Q values from the encoder's features."""
        joined = torch.cat([features, action], dim=-1)
        return self.q1(joined), self.q2(joined)


class SACAgent(nn.Module):
    def __init__(
        self,
        algorithm: str,
        obs_shape: tuple[int, int, int],
        action_dim: int,
        preset: RLPreset,
        layers: tuple[int, int],
        adapter: AttentionAdapter | None = None,
        device: str | torch.device = "cpu",
        seed: int = 0,
    ):
        super().__init__()
        self.algorithm, self.preset, self.action_dim = algorithm, preset, action_dim
        self.spec = algorithm_spec(algorithm)
        """What the algorithm adds to SAC (:mod:`vai.rl.algorithms`)."""
        self.obs_shape, self.layers = tuple(obs_shape), tuple(layers)
        self.device = torch.device(device)
        num_layers, num_shared = layers
        channels, size = obs_shape[0], preset.image_size // preset.downsample
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            encoder = PixelEncoder(channels, size, preset.feature_dim, preset.num_filters, num_layers)
            self.critic = Critic(encoder, action_dim, preset.hidden_dim)
            # The actor reuses every conv layer of the critic (tied) with its own projection.
            actor_encoder = PixelEncoder(
                channels, size, preset.feature_dim, preset.num_filters, num_layers, shared=encoder.own
            )
            self.actor = Actor(
                actor_encoder, action_dim, preset.hidden_dim, preset.actor_log_std_min, preset.actor_log_std_max
            )
            self.aux_tasks = preset.aux_tasks
            self.aux = None
            if self.aux_tasks:
                aux_encoder = PixelEncoder(
                    channels,
                    size,
                    preset.feature_dim,
                    preset.num_filters,
                    num_layers,
                    shared=nn.ModuleList(list(encoder.own)[:num_shared]),
                )
                self.aux = AuxiliaryHeads(aux_encoder, self.aux_tasks, action_dim, preset.hidden_dim)
            self.apply(orthogonal_init)
            if self.aux is not None and preset.aux_encoder_init == "default":
                for layer in [*aux_encoder.own, aux_encoder.projection, aux_encoder.norm]:
                    layer.reset_parameters()  # PyTorch's own initialisation, as VAI leaves its ss_encoder
        self.critic_target = copy.deepcopy(self.critic)
        self.critic_target.requires_grad_(False)
        self.log_alpha = nn.Parameter(torch.tensor(math.log(preset.init_temperature)))
        self.target_entropy = -float(action_dim)
        self.observe = ObservationPipeline(self.spec, preset, adapter)
        self.to(self.device)

        self.actor_optimizer = adam(self._actor_parameters(), lr=preset.actor_lr, betas=(0.9, 0.999))
        self.critic_optimizer = adam(self.critic.parameters(), lr=preset.critic_lr, betas=(0.9, 0.999))
        self.alpha_optimizer = adam([self.log_alpha], lr=preset.alpha_lr, betas=(preset.alpha_beta, 0.999))
        self.aux_optimizer = adam(self._aux_parameters(), lr=preset.aux_lr) if self.aux is not None else None
        self.generator = torch.Generator(device=self.device).manual_seed(seed)
        self.augmenting = False
        """Whether acting and test-time adaptation augment their views as updates do (VAI's
        ``--adapt_aug`` agent in training); the training loop sets it, a new or loaded agent does not."""

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        optimizers = {"actor": self.actor_optimizer, "critic": self.critic_optimizer, "alpha": self.alpha_optimizer}
        if self.aux_optimizer is not None:
            optimizers["aux"] = self.aux_optimizer
        return optimizers

    def _actor_parameters(self) -> list[nn.Parameter]:
        tied = {id(p) for p in self.actor.encoder.shared_parameters()}
        return [p for p in self.actor.parameters() if id(p) not in tied]

    def _aux_parameters(self) -> list[nn.Parameter]:
        # The shared convs are trained by both the critic and the heads (PAD); they are listed here
        # as well, since the tied layers are not among the heads' own parameters().
        return [*self.aux.parameters(), *self.aux.encoder.shared_parameters()]

    @property
    def alpha(self) -> torch.Tensor:
        return self.log_alpha.exp()

    # -- acting -----------------------------------------------------------------------------------
    @torch.no_grad()
    def act(
        self, observation: np.ndarray, sample: bool = False, generator: torch.Generator | None = None
    ) -> np.ndarray:
        """An action in [-1, 1] for one uint8 observation (3F, H, W), as the environment gives it: the
        policy's mean, or a sample; actions (N, A) for a batch of observations (N, 3F, H, W), as a
        vector environment gives them, in one pass.

        ``generator`` draws the sample and, while :attr:`augmenting`, the view's adapt_aug; None: one
        seeded from the agent's seed and the observation's bytes (a batch's: the whole batch's), so
        threads acting at once on one agent (the evaluation's seeds) draw what they would draw in
        turn. A batch's mean actions are each observation's alone, up to the rounding of a batched
        convolution; its samples and adapt_aug come from one generator for the batch. Any other shape
        is a ValueError saying which it takes.
        """
        observation = np.ascontiguousarray(observation)
        single = observation.shape == self.obs_shape
        if not single and observation.shape[1:] != self.obs_shape:
            raise ValueError(
                f"act takes one observation {self.obs_shape} or a batch (N, {', '.join(map(str, self.obs_shape))}), "
                f"not an array of shape {observation.shape}"
            )
        batch = torch.as_tensor(observation, device=self.device)
        actions = self._act(self.observe.eval_view(batch[None] if single else batch), sample, generator, observation)
        return actions[0] if single else actions

    @torch.no_grad()
    def act_stored(
        self, frames: Sequence[np.ndarray], sample: bool = False, generator: torch.Generator | None = None
    ) -> np.ndarray:
        """The same for a stack given as its frames in stored form (:meth:`ObservationPipeline.store`),
        oldest first (:class:`StoredStack` keeps them): adapted frames need no second adapter pass;
        raw ones (``adapter_per_crop``) have their centre crop adapted here, as :meth:`act` does."""
        stack = np.concatenate(frames)
        batch = torch.as_tensor(stack, device=self.device).unsqueeze(0)
        return self._act(self.observe.policy_view(batch), sample, generator, stack)[0]

    def _act(self, view: torch.Tensor, sample: bool, generator: torch.Generator | None, key: np.ndarray) -> np.ndarray:
        """Actions (B, A) for the views (B, ...) of a batch."""
        if generator is None and (sample or self.augmenting):
            generator = self._generator_for(key)
        if self.augmenting:
            view = self.observe.augment(view, generator)
        features = self.actor.encoder(view)
        if not sample:
            return self.actor.mean(features).cpu().numpy()
        return self.actor.policy(features, generator)[1].cpu().numpy()

    def _generator_for(self, observation: np.ndarray) -> torch.Generator:
        """A generator seeded from the agent's seed and ``observation``'s bytes (reproducible whatever
        the order in which threads act)."""
        seed = zlib.crc32(observation.data, self.generator.initial_seed() & 0xFFFFFFFF)
        return torch.Generator(device=self.device).manual_seed(seed)

    def _encoder_input(self, view: torch.Tensor) -> torch.Tensor:
        """``view`` as one encoder pass in training sees it (``vai``: a fresh adapt_aug)."""
        return self.observe.augment(view, self.generator)

    # -- learning ---------------------------------------------------------------------------------
    def update(self, batch: Batch, step: int) -> dict[str, torch.Tensor]:
        """One SAC step (and the scheduled actor, target and head updates) on a replay batch, whose
        frames are in the stored form (:meth:`ObservationPipeline.store`)."""
        preset = self.preset
        obs = self.observe.train_view(batch.obs, self.generator)
        bootstrap_obs = self.observe.train_view(batch.bootstrap_obs, self.generator)
        target_return, bootstrap = nstep_return(batch, preset.discount)
        metrics, trunk, features = self._update_critic(obs, batch.action, target_return, bootstrap, bootstrap_obs)
        if step % preset.actor_update_every == 0:
            if not preset.actor_reuses_critic_trunk:
                # VAI: the actor and the critic encode the batch again (detached from the convs, which
                # only the critic trains), with the convs just updated and fresh augmentations.
                with torch.no_grad():
                    trunk, features = self._encode_twice(obs)
            metrics.update(self._update_actor(trunk.detach(), features.detach()))
        if step % preset.target_update_every == 0:
            self.soft_update_target()
        if self.aux is not None and step % preset.aux_update_every == 0:
            # PAD's heads learn one-step dynamics: with n-step returns next_obs is a view of its own.
            next_obs = (
                bootstrap_obs
                if batch.next_obs is batch.bootstrap_obs
                else self.observe.train_view(batch.next_obs, self.generator)
            )
            metrics.update(self._update_aux(obs, batch.action, batch.reward, next_obs, augment=self._encoder_input))
        return metrics

    def _encode_twice(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The actor's conv output and the critic's features of ``obs``, each from its own adapt_aug
        (drawn in that order). Where the actor's convs are all the critic's (tied), both views go
        through them as one batch: each image's output is the one a pass of its own gives."""
        actor_view, critic_view = self._encoder_input(obs), self._encoder_input(obs)
        if self.actor.encoder.convs != self.critic.encoder.convs:
            return self.actor.encoder.trunk(actor_view), self.critic.encoder(critic_view)
        actor_trunk, critic_trunk = self.critic.encoder.trunk(torch.cat([actor_view, critic_view])).chunk(2)
        return actor_trunk, self.critic.encoder.head(critic_trunk)

    def _update_critic(self, obs, action, target_return, bootstrap, bootstrap_obs) -> dict[str, torch.Tensor]:
        """Critic (and encoder) step towards ``target_return`` + ``bootstrap`` x soft value of
        ``bootstrap_obs`` (for one-step returns: reward + discount x not_done x V(next_obs))."""
        with torch.no_grad():
            _, next_action, next_log_prob, _ = self.actor(self._encoder_input(bootstrap_obs), generator=self.generator)
            target_q1, target_q2 = self.critic_target(self._encoder_input(bootstrap_obs), next_action)
            soft_value = torch.min(target_q1, target_q2) - self.alpha.detach() * next_log_prob
            target = target_return + bootstrap * soft_value
        encoder = self.critic.encoder
        if self.spec.convolved_critic:
            augmented = random_convolution(obs, self.generator)
            trunk = encoder.trunk(torch.cat([obs, augmented]))
            features = encoder.head(trunk)
            q1, q2 = self.critic.q(features, torch.cat([action, action]))
            weights = torch.cat(
                [torch.full_like(target, self.preset.svea_alpha), torch.full_like(target, self.preset.svea_beta)]
            )
            doubled = torch.cat([target, target])
            loss = (weights * ((q1 - doubled) ** 2 + (q2 - doubled) ** 2)).sum() / target.shape[0]
            q1 = q1[: target.shape[0]]
            trunk, features = trunk[: target.shape[0]], features[: target.shape[0]]
        else:
            trunk = encoder.trunk(self._encoder_input(obs))
            features = encoder.head(trunk)
            q1, q2 = self.critic.q(features, action)
            loss = F.mse_loss(q1, target) + F.mse_loss(q2, target)
        self.critic_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.critic_optimizer.step()
        return {"critic_loss": loss.detach(), "q": q1.detach().mean()}, trunk, features

    def _update_actor(self, trunk: torch.Tensor, critic_features: torch.Tensor) -> dict[str, torch.Tensor]:
        """``trunk``: the conv output of the batch, ``critic_features``: the critic's features of it,
        both detached: the actor's gradient stops at the conv layers (SAC-AE), so only the critic
        shapes them. With ``actor_reuses_critic_trunk`` both come from the critic's step (as DrQ-v2
        reuses them), saving two conv passes. The Q heads are those just updated."""
        _, action, log_prob, log_std = self.actor.policy(self.actor.encoder.head(trunk), self.generator)
        q1, q2 = self.critic.q(critic_features, action)
        actor_loss = (self.alpha.detach() * log_prob - torch.min(q1, q2)).mean()
        self.actor_optimizer.zero_grad(set_to_none=True)
        actor_loss.backward()
        self.actor_optimizer.step()
        alpha_loss = (self.alpha * (-log_prob - self.target_entropy).detach()).mean()
        self.alpha_optimizer.zero_grad(set_to_none=True)
        alpha_loss.backward()
        self.alpha_optimizer.step()
        entropy = 0.5 * log_std.shape[1] * (1.0 + math.log(2 * math.pi)) + log_std.sum(dim=-1)
        return {
            "actor_loss": actor_loss.detach(),
            "alpha_loss": alpha_loss.detach(),
            "alpha": self.alpha.detach(),
            "entropy": entropy.detach().mean(),
        }

    def _update_aux(
        self, obs, action, reward, next_obs, tasks=None, augment: Callable | None = None
    ) -> dict[str, torch.Tensor]:
        losses = self.aux.losses(obs, action, reward, next_obs, tasks, self.generator, augment)
        total = sum(losses.values())
        self.aux_optimizer.zero_grad(set_to_none=True)
        total.backward()
        self.aux_optimizer.step()
        return {f"aux_{name}_loss": value.detach() for name, value in losses.items()}

    @torch.no_grad()
    def soft_update_target(self) -> None:
        """Target critic <- tau x critic + (1 - tau) x target; the encoder with ``encoder_tau``."""
        preset = self.preset
        for name, tau in (("q1", preset.critic_tau), ("q2", preset.critic_tau), ("encoder", preset.encoder_tau)):
            online, target = getattr(self.critic, name), getattr(self.critic_target, name)
            for parameter, slow in zip(online.parameters(), target.parameters()):
                slow.lerp_(parameter, tau)

    # -- test-time adaptation (PAD) ---------------------------------------------------------------
    def adapt(self, observation: np.ndarray, action: np.ndarray, next_observation: np.ndarray) -> dict:
        """One PAD step on a test transition: ``tta_batch`` random crops of it, self-supervised losses
        (no reward), an update of the heads and the shared conv layers. The crops are augmented only
        while :attr:`augmenting` (VAI's PAD evaluation runs without ``--adapt_aug``)."""
        if self.aux is None:
            raise ValueError("test-time adaptation needs PAD heads: train with aux_tasks set")
        tasks = tuple(task for task in self.aux_tasks if task in ("inverse", "rotation"))
        if not tasks:
            raise ValueError("test-time adaptation needs the inverse or rotation head")
        copies = self.preset.tta_batch
        obs = torch.as_tensor(observation, device=self.device).unsqueeze(0).expand(copies, -1, -1, -1)
        next_obs = torch.as_tensor(next_observation, device=self.device).unsqueeze(0).expand(copies, -1, -1, -1)
        actions = torch.as_tensor(action, dtype=torch.float32, device=self.device).unsqueeze(0).expand(copies, -1)
        obs_view = self.observe.train_view(self.observe.store_stacks(obs.contiguous()), self.generator)
        next_view = self.observe.train_view(self.observe.store_stacks(next_obs.contiguous()), self.generator)
        augment = self._encoder_input if self.augmenting else None
        return self._update_aux(obs_view, actions, None, next_view, tasks, augment)
