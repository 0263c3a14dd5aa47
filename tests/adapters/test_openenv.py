"""The OpenEnv adapter against the real library (OpenEnv 0.10) and its own clients, in its own venv
(``gcop-env[openenv]``: its ``mcp`` pin excludes verifiers'). A real uvicorn server on loopback."""

from __future__ import annotations

import asyncio
import json
import re
import shlex
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import gymnasium as gym
import pytest
from support import GOOD_GUIDE, KODCODE_SAMPLE, REPO_ROOT, import_adapter_library, solver_for

import_adapter_library("openenv", "openenv")

import httpx  # noqa: E402
import uvicorn  # noqa: E402
from openenv.core import GenericEnvClient  # noqa: E402

import gcop_env  # noqa: E402,F401
from gcop_env import RetryPolicy  # noqa: E402
from gcop_env.adapters.openenv import GCoPEnvClient, GuideAction, make_app  # noqa: E402
from gcop_env.utils.sharing import holders  # noqa: E402

HARMFUL = "<think>Mislead.</think><strategy>HARMFUL: add everything twice.</strategy>"
REPLIES = [GOOD_GUIDE, HARMFUL, "no tags, just an opinion"]
DOCKERFILE = REPO_ROOT / "examples" / "openenv" / "Dockerfile"


def unused_loopback_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Served:
    """``make_app(...)`` under uvicorn in a thread, on a free loopback port."""

    def __init__(self, env_id: str, **make_kwargs):
        self.app = make_app(env_id, **make_kwargs)
        self.port = unused_loopback_port()
        self.server = uvicorn.Server(uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> "Served":
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.05)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=60)


def wait_for(condition, timeout_s: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def gsm8k_kwargs(server, gsm8k_dir, **extra):
    return dict(core=f"openai:solver@{server.openai_base_url}", split="test", data_files=str(gsm8k_dir), limit=6,
                gamma=0.0, retry=RetryPolicy(max_attempts=1), cache=False, **extra)


def expected(env_kwargs, pairs):
    env = gym.make("GCoP-GSM8K-v0", **env_kwargs)
    out = []
    for task_id, text in pairs:
        env.reset(options={"task_id": task_id})
        _, reward, _, _, info = env.step(text)
        out.append((reward, info))
    env.close()
    return out


def test_websocket_sessions_score_as_the_env_and_closing_them_leaves_the_server_whole(solver_server, gsm8k_dir):
    kwargs = gsm8k_kwargs(solver_server, gsm8k_dir)
    task_ids = [f"gsm8k/test/{i}" for i in range(6)]
    pairs = [(task_id, text) for task_id in task_ids for text in REPLIES]
    want = expected(kwargs, pairs)
    with Served("GCoP-GSM8K-v0", **kwargs) as served:
        scoring = served.app.state.gcop_scoring
        core = scoring._base.core

        async def session(task_id: str) -> list:
            results = []
            async with GCoPEnvClient(base_url=served.url) as client:
                for text in REPLIES:  # one WebSocket session: reset, step, for each reply
                    reset = await client.reset(task_id=task_id)
                    assert reset.observation.task_id == task_id and "<strategy>" in reset.observation.prompt
                    result = await client.step(GuideAction(text=text))
                    results.append(result)
            return results

        async def all_sessions():
            return await asyncio.gather(*(session(task_id) for task_id in task_ids))  # 6 concurrent sessions

        got = [r for rs in asyncio.run(all_sessions()) for r in rs]
        assert len(got) == len(want) == 18
        for result, (reward, info) in zip(got, want):
            assert result.done and result.reward == pytest.approx(reward)
            assert result.observation.terms == info["reward_components"]
            assert result.observation.status in ("pass", "fail", "malformed")
            assert result.observation.metadata["reward_components"] == info["reward_components"]
        assert {r.observation.status for r in got} == {"pass", "fail", "malformed"}
        # OpenEnv closes each session once its socket is gone (on the server's loop, a moment after the
        # client returned); then only the server's own handle holds the parts, and they are open
        assert wait_for(lambda: holders(core) == 1), holders(core)
        assert core.inner._client is not None
        # OpenEnv's generic client (plain dicts) on the same server
        async def generic():
            async with GenericEnvClient(base_url=served.url) as client:
                await client.reset(task_id=task_ids[0])
                return await client.step({"text": GOOD_GUIDE})

        result = asyncio.run(generic())
        assert result.reward == pytest.approx(1.1) and result.observation["status"] == "pass"
    assert holders(core) == 0 and core.inner._client is None  # the app's shutdown closed the last handle


@pytest.mark.parametrize("backend", ["process", "docker"])
def test_stateless_http_steps_carry_the_task_id_and_concurrent_requests_share_the_sandbox(fake_llm, tmp_path, backend):
    from _sandbox_support import require_docker

    from gcop_env.validators.kodcode import load_kodcode

    if backend == "docker":
        require_docker()  # skips without Docker, fails under GCOP_REQUIRE_DOCKER (the test command sets it)
    problems = load_kodcode(split="train", data_files=str(KODCODE_SAMPLE))[:3]
    server = fake_llm(solver_for(problems))
    kwargs = dict(core=f"openai:solver@{server.openai_base_url}", split="train", data_files=str(KODCODE_SAMPLE),
                  limit=3, gamma=0.0, kappa=0.0, retry=RetryPolicy(max_attempts=1), cache=False, sandbox=backend)
    with Served("GCoP-KodCode-v0", **kwargs) as served:
        validator = served.app.state.gcop_scoring._base.validator

        def step(task_id: str) -> dict:
            response = httpx.post(f"{served.url}/step", json={"action": {"text": GOOD_GUIDE, "task_id": task_id}},
                                  timeout=300)
            assert response.status_code == 200, response.text
            return response.json()

        ids = [p.task_id for p in problems] * 4
        threads, results = [], {}
        for i, task_id in enumerate(ids):  # 12 requests at once: each builds an env and closes it after
            thread = threading.Thread(target=lambda i=i, t=task_id: results.__setitem__(i, step(t)))
            threads.append(thread)
            thread.start()
        for thread in threads:
            thread.join(timeout=600)
        assert len(results) == 12
        for i, task_id in enumerate(ids):
            body = results[i]
            assert body["done"] and body["reward"] == pytest.approx(1.1), body
            assert body["observation"]["task_id"] == task_id and body["observation"]["status"] == "pass"
        sandbox = validator._sandbox
        assert sandbox is not None and holders(validator) == 0  # the scorer is held, not the validator itself
        assert wait_for(lambda: holders(served.app.state.gcop_scoring._base.scorer) == 1)  # every request released its hold
        assert step(ids[0])["reward"] == pytest.approx(1.1) and validator._sandbox is sandbox  # never torn down
        # a stateless step without a task id cannot know its problem: a clear error, not a score
        response = httpx.post(f"{served.url}/step", json={"action": {"text": GOOD_GUIDE}}, timeout=60)
        assert response.status_code >= 400
        reset = httpx.post(f"{served.url}/reset", json={"task_id": ids[1]}, timeout=60).json()
        assert reset["observation"]["task_id"] == ids[1] and reset["reward"] is None and not reset["done"]
        schema = httpx.get(f"{served.url}/schema", timeout=60).json()
        assert {"text", "task_id"} <= set(schema["action"]["properties"])


def test_an_infra_failure_is_reward_none_not_zero(gsm8k_dir):
    dead = f"openai:solver@http://127.0.0.1:{unused_loopback_port()}/v1"
    kwargs = dict(core=dead, split="test", data_files=str(gsm8k_dir), limit=2, gamma=0.0,
                  retry=RetryPolicy(max_attempts=1), cache=False)
    with Served("GCoP-GSM8K-v0", **kwargs) as served:
        client = GCoPEnvClient(base_url=served.url).sync()
        with client:
            client.reset(task_id="gsm8k/test/1")
            result = client.step(GuideAction(text=GOOD_GUIDE))
        assert result.reward is None and result.done
        assert result.observation.status == "infra"
        assert result.observation.metadata["reward_is_task_outcome"] is False
        assert result.observation.metadata["error_stage"] == "core"
        body = httpx.post(f"{served.url}/step", json={"action": {"text": GOOD_GUIDE, "task_id": "gsm8k/test/0"}},
                          timeout=60).json()
        assert body["reward"] is None and body["observation"]["status"] == "infra"


def test_the_dockerfile_installs_the_extra_and_its_command_serves(solver_server, gsm8k_dir, tmp_path):
    """The image cannot be built offline here (no registry for its base image); what it runs can."""
    text = DOCKERFILE.read_text()
    assert re.search(r"^FROM python:3\.11", text, re.M)
    install = re.search(r"^RUN (pip install .*)$", text, re.M).group(1)
    assert "[openenv]" in install  # what this venv was made with (scripts/adapter_venv.sh openenv)
    command = json.loads(re.search(r"^CMD (\[.*\])$", text, re.M).group(1))
    assert command[:3] == ["gcop", "serve", "openenv"]
    port = unused_loopback_port()
    argv = [str(Path(sys.executable).parent / "gcop"), *command[1:]]
    argv = [a for a in argv]
    argv[argv.index("--host") + 1] = "127.0.0.1"  # the container listens on 0.0.0.0; a test only on loopback
    argv[argv.index("--port") + 1] = str(port)
    argv += ["--core", f"openai:solver@{solver_server.openai_base_url}", "--data-files", str(gsm8k_dir),
             "--limit", "2", "--env-options", json.dumps({"gamma": 0, "cache": False})]
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while True:
            assert process.poll() is None, process.stdout.read()
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the served command did not come up: " + shlex.join(argv)
            time.sleep(0.2)
        body = httpx.post(f"{url}/step", json={"action": {"text": GOOD_GUIDE, "task_id": "gsm8k/test/0"}},
                          timeout=120).json()
        assert body["reward"] == pytest.approx(1.1)
    finally:
        process.terminate()
        process.wait(timeout=60)


def test_gcop_serve_refuses_bad_options_in_one_line(capsys):
    from gcop_env.cli.main import main

    for args, message in ((["--env-options", "[1]"], "must be a JSON object"),
                          (["--env-options", "{"], "not JSON"),
                          (["GCoP-Nope-v0"], "doesn't exist"),
                          (["--env-options", '{"gamma": -1}'], "gamma")):
        assert main(["serve", "openenv", *args, "--port", str(unused_loopback_port())]) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err


def test_openenv_example_serves_and_plays_concurrent_sessions(solver_server, gsm8k_dir, capsys):
    import runpy

    main = runpy.run_path(str(REPO_ROOT / "examples" / "openenv_client.py"))["main"]
    summary = main(["--core", f"openai:solver@{solver_server.openai_base_url}", "--data-files", str(gsm8k_dir),
                    "--sessions", "3"])
    assert summary == {"sessions": 3, "infra": 0, "mean_reward": pytest.approx(1.1)}
    assert capsys.readouterr().out.count("status pass") == 3
