"""The training loop's speed-ups compute what the plain loop computes.

``tests/reference/rl_parameters.json`` holds parameters recorded from the loop and the updates as
they were before any of the speed-ups (``python tests/test_rl_speed.py --record FILE`` with that
commit's ``src`` on ``PYTHONPATH`` writes it): a short `quick` training run on cartpole_balance and a
few updates of the `paper` networks. The runs here must give the same parameters within float
tolerance, and the loop must give the same bits whether the environment steps on its own thread
or on the loop's. Both run torch on one thread, as they were recorded: how many threads share a
convolution changes the order of its sums, and so the last bits of every parameter.
"""

from __future__ import annotations

import argparse
import copy
import functools
import json
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

import vai
from vai.presets.rl import RLPreset, get_rl_preset
from vai.rl.envthread import EnvThread
from vai.rl.logger import RunLogger
from vai.rl.loop import Trainer
from vai.rl.replay import ReplayBuffer
from vai.rl.sac import SACAgent
from vai.vision.adapter import AttentionAdapter

REFERENCE = Path(__file__).resolve().parent / "reference" / "rl_parameters.json"
TASK = "cartpole_balance"


def seeded_adapter(seed: int = 0) -> AttentionAdapter:
    """An untrained adapter whose batch norm has statistics of its own, so its masks vary."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        adapter = AttentionAdapter()
        for module in adapter.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.2, 0.2)
                module.running_var.uniform_(0.5, 2.0)
    return adapter.eval()


def on_one_thread(function):
    """``function`` run with torch on one thread (the recorded runs' setting), the count restored after."""

    @functools.wraps(function)
    def run(*args, **kwargs):
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return function(*args, **kwargs)
        finally:
            torch.set_num_threads(threads)

    return run


def digest(agent: SACAgent, buffer: ReplayBuffer | None = None) -> dict[str, list[float]]:
    """Per tensor of the agent: its sum (float64) and its first three values; the replay's frame sum."""
    out = {}
    for name, tensor in agent.state_dict().items():
        if tensor.is_floating_point():
            flat = tensor.detach().double().flatten()
            out[name] = [float(flat.sum()), *map(float, flat[:3])]
    if buffer is not None:
        out["replay.frames"] = [float(buffer.frames.double().sum())]
    return out


@on_one_thread
def quick_run(directory: Path, threaded: bool) -> dict[str, list[float]]:
    """A short run of the `quick` preset's loop on cartpole_balance (vai): 40 random steps, then 30
    steps with an update each (actor, target and heads on their schedules)."""
    preset = replace(
        get_rl_preset("quick"),
        init_steps=40,
        init_burst=False,
        train_steps=70,
        batch_size=16,
        eval_every=10**9,
        checkpoint_every=10**9,
    )
    make = lambda: vai.make_env(TASK, "train")  # noqa: E731
    env = EnvThread(make) if threaded else make()
    try:
        shape, actions = env.observation_space.shape, env.action_space.shape[0]
        agent = SACAgent("vai", shape, actions, preset, (2, 2), seeded_adapter(), "cpu", seed=0)
        buffer = ReplayBuffer(200, agent.observe.stored_shape((3, *shape[1:])), actions, seed=0)
        with RunLogger(directory, tensorboard=False) as logger:
            Trainer(env, agent, buffer, logger, preset, 8, directory, TASK, 0, progress=False).train()
    finally:
        env.close()
    return digest(agent, buffer)


RECORDED_NOISE = {"adapt_noise_bank": True} if hasattr(RLPreset, "adapt_noise_bank") else {}
"""The reference's paper updates took adapt_aug's noise from the CPU's bank, which code older than
the setting always did; --record with such code's src leaves the setting out."""

RECORDED_INIT = {"aux_encoder_init": "orthogonal"} if hasattr(RLPreset, "aux_encoder_init") else {}
"""The reference's paper networks initialised the PAD heads' own layers orthogonally, as code older than
the setting did."""


@on_one_thread
def paper_updates(updates: int = 4) -> dict[str, list[float]]:
    """``updates`` updates of the `paper` networks (vai, adapter per crop) on a replay of random frames."""
    preset = replace(get_rl_preset("paper"), batch_size=8, **RECORDED_NOISE, **RECORDED_INIT)
    agent = SACAgent("vai", (9, 100, 100), 6, preset, (4, 4), seeded_adapter(1), "cpu", seed=1)
    buffer = ReplayBuffer(64, (3, 100, 100), 6, seed=1)
    rng = np.random.default_rng(1)
    for _episode in range(2):
        buffer.start_episode(rng.integers(0, 256, (3, 100, 100), dtype=np.uint8))
        for _ in range(20):
            frame = rng.integers(0, 256, (3, 100, 100), dtype=np.uint8)
            buffer.add(rng.uniform(-1, 1, 6).astype(np.float32), float(rng.random()), False, frame)
    for step in range(1, updates + 1):
        agent.update(buffer.sample(preset.batch_size, nstep=preset.nstep), step)
    return digest(agent)


def assert_close(found: dict[str, list[float]], recorded: dict[str, list[float]]) -> None:
    assert found.keys() == recorded.keys()
    for name, values in recorded.items():
        np.testing.assert_allclose(found[name], values, rtol=1e-4, atol=1e-5, err_msg=name)


def test_quick_loop_gives_the_recorded_parameters_on_either_thread(tmp_path):
    inline = quick_run(tmp_path / "inline", threaded=False)
    threaded = quick_run(tmp_path / "threaded", threaded=True)
    assert inline == threaded  # bit for bit
    assert_close(inline, json.loads(REFERENCE.read_text())["quick_run"])


def test_paper_updates_give_the_recorded_parameters():
    assert_close(paper_updates(), json.loads(REFERENCE.read_text())["paper_updates"])


def test_the_agents_adam_is_the_one_tensor_loop_bit_for_bit():
    from vai.rl.sac import adam

    torch.manual_seed(0)
    loop = torch.nn.Sequential(torch.nn.Linear(12, 32), torch.nn.ReLU(), torch.nn.Linear(32, 1))
    multi = copy.deepcopy(loop)
    optimizers = [torch.optim.Adam(loop.parameters(), foreach=False), adam(multi.parameters())]
    for _ in range(5):
        inputs = torch.randn(16, 12)
        for model, optimizer in zip((loop, multi), optimizers):
            optimizer.zero_grad()
            model(inputs).pow(2).mean().backward()
            optimizer.step()
    assert all(torch.equal(a, b) for a, b in zip(loop.parameters(), multi.parameters()))


def record(path: Path) -> None:
    with tempfile.TemporaryDirectory() as folder:
        values = {"quick_run": quick_run(Path(folder), threaded=False), "paper_updates": paper_updates()}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(values, indent=1) + "\n")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="record the reference parameters")
    parser.add_argument("--record", type=Path, default=REFERENCE)
    record(parser.parse_args().record)
