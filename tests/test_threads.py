"""vai on a shared CPU (vai.threads): OpenMP waits passively in a vai process, and torch's thread count
comes from the cores the process may use, so that two vai processes on one CPU do not stall each other."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from test_rl_cli import TASK, TINY

from vai import threads
from vai.threads import stage_threads, torch_threads, usable_cores

CLEARED = ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT")


def test_a_cgroup_quota_caps_the_usable_cores(tmp_path, monkeypatch):
    (tmp_path / "cpu.max").write_text("150000 100000\n")  # cgroup v2: 1.5 CPUs' worth of time
    assert threads.cgroup_cpu_quota(tmp_path) == 1.5
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert threads.cgroup_cpu_quota(tmp_path) is None
    (tmp_path / "cpu.max").unlink()
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("300000\n")  # cgroup v1: 3 CPUs
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert threads.cgroup_cpu_quota(tmp_path) == 3
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")
    assert threads.cgroup_cpu_quota(tmp_path) is None

    affinity = len(os.sched_getaffinity(0))
    monkeypatch.setattr(threads, "cgroup_cpu_quota", lambda: 0.5)
    assert usable_cores() == 1  # a fraction of a CPU is still one core to run on
    monkeypatch.setattr(threads, "cgroup_cpu_quota", lambda: affinity + 8.0)
    assert usable_cores() == affinity  # a quota beyond the affinity does not add cores


def test_stages_take_their_count_from_the_cores_unless_omp_num_threads_is_set(monkeypatch):
    monkeypatch.setattr(threads, "usable_cores", lambda: 8)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert stage_threads() == 8
    assert stage_threads(reserved=1) == 7  # training: one core for the environment's thread
    assert stage_threads(sharing=3) == 2  # evaluation: the cores shared by 3 threads
    monkeypatch.setattr(threads, "usable_cores", lambda: 1)
    assert stage_threads(reserved=1) == 1 and stage_threads(sharing=4) == 1
    for value, count in (("3", 3), ("4,2", 4), ("0", 1), ("many", 1)):
        monkeypatch.setenv("OMP_NUM_THREADS", value)
        assert stage_threads(reserved=1) == count


def test_torch_threads_sets_the_count_for_its_block_only():
    before = torch.get_num_threads()
    other = 1 if before != 1 else 2
    with torch_threads(other):
        assert torch.get_num_threads() == other
    assert torch.get_num_threads() == before
    with pytest.raises(RuntimeError), torch_threads(other):
        raise RuntimeError("a failed stage")
    assert torch.get_num_threads() == before


def vai_on_cores(cores: set[int], *args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    """``vai ARGS`` in a fresh process that may run on ``cores`` only, with no OpenMP setting of the
    user's, and OpenMP describing the settings it starts with on stderr."""
    environment = {name: value for name, value in os.environ.items() if name not in CLEARED}
    environment.update(env, OMP_DISPLAY_ENV="VERBOSE")
    return subprocess.run(
        [sys.executable, "-m", "vai.cli", *args],
        capture_output=True,
        text=True,
        env=environment,
        preexec_fn=lambda: os.sched_setaffinity(0, cores),
        timeout=600,
    )


def test_the_usable_cores_follow_the_processs_affinity():
    code = "from vai.threads import stage_threads, usable_cores; print(usable_cores(), stage_threads(reserved=1))"
    environment = {name: value for name, value in os.environ.items() if name not in CLEARED}
    first = min(os.sched_getaffinity(0))
    pinned = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=environment,
        preexec_fn=lambda: os.sched_setaffinity(0, {first}),
        check=True,
    )
    assert pinned.stdout.split() == ["1", "1"]  # one core: one torch thread, the environment inline


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two cores")
def test_a_vai_training_waits_passively_and_leaves_a_core_to_its_environment(tmp_path, data_dir):
    two_cores = set(sorted(os.sched_getaffinity(0))[:2])
    command = ["train", TASK, "--algo", "sac", *TINY, "train_steps=1"]
    result = vai_on_cores(two_cores, *command, "--out", str(tmp_path / "sac"), env={"VAI_DATA_DIR": str(data_dir)})
    assert result.returncode == 0, result.stderr
    # GNU OpenMP spins 300,000 times before it sleeps unless the wait policy is passive.
    assert "GOMP_SPINCOUNT = '0'" in result.stderr
    config = json.loads((tmp_path / "sac" / "config.json").read_text())
    assert config["torch_threads"] == 1 and config["environment_thread"] is True


def test_the_users_wait_policy_wins():
    # The vai command's set-up (``vai --version`` ends right after it), then torch loading OpenMP.
    code = "from vai.cli import main\ntry:\n    main(['--version'])\nexcept SystemExit:\n    import torch"
    for policy, spin_count in ((None, "'0'"), ("ACTIVE", "'30000000000'")):
        environment = {name: value for name, value in os.environ.items() if name not in CLEARED}
        environment.update(OMP_DISPLAY_ENV="VERBOSE", **({"OMP_WAIT_POLICY": policy} if policy else {}))
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=environment)
        assert done.returncode == 0, done.stderr
        assert f"GOMP_SPINCOUNT = {spin_count}" in done.stderr  # ACTIVE: GNU OpenMP spins on and on


def test_a_resumed_training_computes_on_the_thread_count_it_started_with(tmp_path, monkeypatch):
    from vai.rl.stages import training_threads
    from vai.run_dir import AgentDir

    out = AgentDir(tmp_path / "agent")
    out.path.mkdir()
    out.config.write_text(json.dumps({"task": TASK, "torch_threads": 3}))
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(threads, "usable_cores", lambda: 8)
    assert training_threads(out, resume=True) == 3  # the recorded count, whatever this machine has
    assert training_threads(out, resume=False) == 7  # a new run: the rule
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert training_threads(out, resume=True) == 2  # the user's count wins
