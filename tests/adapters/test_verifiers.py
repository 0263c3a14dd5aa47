"""The verifiers adapter against the real library (verifiers 0.4, ``verifiers.v1``), in its own venv
(``gcop-env[verifiers]``: its ``mcp`` pin excludes OpenEnv's). ``vf-eval`` runs as a user runs it,
with a fake guide model and a fake core on loopback."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import gymnasium as gym
import pytest
from support import GOOD_GUIDE, import_adapter_library

vf_root = import_adapter_library("verifiers", "verifiers")

import verifiers.v1 as vf  # noqa: E402

import gcop_env  # noqa: E402,F401
from gcop_env.adapters import verifiers as adapter  # noqa: E402

HARMFUL = "<think>Mislead.</think><strategy>HARMFUL: add everything twice.</strategy>"
REPLIES = [GOOD_GUIDE, HARMFUL, "no tags, just an opinion", "<strategy></strategy>"]
VF_EVAL = Path(sys.executable).parent / "vf-eval"


class CyclingGuide:
    """A fake guide model: each request gets the next of REPLIES."""

    def __init__(self):
        self.calls = 0
        self.lock = threading.Lock()

    def __call__(self, prompt: str) -> str:
        with self.lock:
            self.calls += 1
            return REPLIES[self.calls % len(REPLIES)]


def unused_loopback_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def vf_eval(tmp_path, guide_url: str, core: str, gsm8k_dir, *extra: str) -> list[dict]:
    out = tmp_path / "vf-out"
    argv = [str(VF_EVAL), "gcop-tasks", "-m", "guide", "--client.base-url", guide_url, "--no-push", "--no-rich",
            "-o", str(out), "--env.taskset.data-files", str(gsm8k_dir), "--env.taskset.limit", "6",
            "--env.taskset.task.core", core,
            "--env.taskset.task.options", json.dumps({"gamma": 0, "retry": {"max_attempts": 1}}), *extra]
    env = {**os.environ, "OPENAI_API_KEY": "fake", "GCOP_CACHE_DIR": str(tmp_path / "cache")}
    done = subprocess.run(argv, capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    files = list(out.glob("*/traces.jsonl"))
    assert len(files) == 1, files
    return [json.loads(line) for line in files[0].read_text().splitlines() if line.strip()]


def reply_of(trace: dict) -> str:
    replies = [n["message"]["content"] for n in trace["nodes"] if n["message"]["role"] == "assistant"]
    assert len(replies) == 1
    return replies[0].strip()


def test_vf_eval_scores_every_rollout_as_the_env_does(fake_llm, solver_server, gsm8k_dir, tmp_path):
    guide = fake_llm(CyclingGuide())
    core = f"openai:solver@{solver_server.openai_base_url}"
    episodes = vf_eval(tmp_path, guide.openai_base_url, core, gsm8k_dir, "-n", "6", "-r", "3")
    assert len(episodes) == 18
    env = gym.make("GCoP-GSM8K-v0", core=core, split="test", data_files=str(gsm8k_dir), limit=6, gamma=0,
                   cache=False)
    statuses, equal = set(), 0
    for episode in episodes:
        trace = episode["traces"][0]
        data = episode["task"]["data"]
        assert data["task_id"] == data["id"] and data["env_id"] == "GCoP-GSM8K-v0"
        prompt, _ = env.reset(options={"task_id": data["task_id"]})
        assert data["prompt"] == prompt  # the task's prompt is the env's observation
        _, reward, _, _, info = env.step(reply_of(trace))
        assert trace["ok"] and trace["errors"] == []
        assert trace["rewards"] == {adapter.REWARD: {"score": pytest.approx(reward), "weight": 1.0}}
        for name, value in info["reward_components"].items():
            if value is not None:
                assert trace["metrics"][name] == pytest.approx(float(value)), name
        assert trace["metrics"]["infra_error"] == 0.0 and "cost_usd" in trace["metrics"]
        gcop = trace["info"]["gcop"]
        assert gcop["task_id"] == data["task_id"] and gcop["reward_components"] == info["reward_components"]
        assert gcop["structure_ok"] == info["structure_ok"]
        statuses.add(gcop["status"])
        equal += 1
    assert equal == 18 and {"pass", "fail", "malformed"} <= statuses
    # the guide got one plain chat turn per rollout: no tools, no shell
    chats = [r for r in guide.requests if r["path"].endswith("/chat/completions")]
    assert len(chats) == 18 and not any(r["body"].get("tools") for r in chats)
    env.close()


def test_an_infra_failure_is_an_errored_rollout_not_a_zero(fake_llm, gsm8k_dir, tmp_path):
    guide = fake_llm(lambda prompt: GOOD_GUIDE)
    dead_core = f"openai:solver@http://127.0.0.1:{unused_loopback_port()}/v1"
    episodes = vf_eval(tmp_path, guide.openai_base_url, dead_core, gsm8k_dir, "-n", "2")
    assert len(episodes) == 2
    for episode in episodes:
        trace = episode["traces"][0]
        assert not trace["ok"] and trace["errors"], trace["errors"]
        assert "not a task outcome" in trace["errors"][-1]["message"]
        assert trace["rewards"].get(adapter.REWARD) is None  # unscored, never 0.0
        assert trace["info"]["gcop"]["status"] == "infra"
        assert trace["info"]["gcop"]["reward_is_task_outcome"] is False


def test_the_taskset_and_its_defaults_as_verifiers_resolves_them(solver_server, gsm8k_dir):
    from verifiers.v1.utils.loaders import default_harness_id, env_config_type, environment_class, taskset_class

    assert taskset_class("gcop-tasks") is adapter.GCoPTaskset
    assert default_harness_id("gcop-tasks") == "gcop-tasks"  # not verifiers' bash harness
    assert environment_class("gcop-tasks") is adapter.GCoPEnv
    assert env_config_type("gcop-tasks")().agent.runtime.type == "subprocess"
    assert adapter.GuideHarness.EXECUTES_CODE is False and adapter.GuideHarness.NEEDS_CONTAINER is False
    config = adapter.GCoPTasksetConfig(id="gcop-tasks", data_files=str(gsm8k_dir), limit=4,
                                       task=adapter.GCoPTaskConfig(core=f"openai:solver@{solver_server.openai_base_url}",
                                                                   options={"gamma": 0}))
    tasks = list(adapter.GCoPTaskset(config))
    assert [t.data.task_id for t in tasks] == [f"gsm8k/test/{i}" for i in range(4)]
    assert [t.data.idx for t in tasks] == [0, 1, 2, 3] and all(t.data.prompt for t in tasks)
    assert isinstance(tasks[0], vf.Task)
    assert not {"reference", "answer", "metadata"} & set(tasks[0].data.model_dump())  # nothing of the gold in traces
    adapter.close_scoring()
