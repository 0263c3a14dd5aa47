"""No observation of a multi-turn episode holds a gold answer or a reward test's content, checked over
the whole offline datasets (GSM8K test and train, the KodCode sample, all of HumanEval) through the real
env path: reset, a failed turn scored by the validator (code: in the sandbox), the feedback, the revision
observation. Only the core is a stand-in, an in-process Core that answers wrongly."""

from __future__ import annotations

import re
import time

import gymnasium as gym
import pytest
from gcop_env.validators.feedback_tests import split_pytest_file, unit_names
from gcop_env.validators.gsm8k import normalize_number, reference_value
from support import GSM8K_DIR, KODCODE_SAMPLE

import gcop_env  # noqa: F401
from gcop_env.cores.base import Core, CoreRequest, CoreResponse
from gcop_env.step.prompts import revision_prompt

STRATEGY = "Restate what is asked, then work it out one step at a time."
GUIDE = f"<think>plan</think><strategy>{STRATEGY}</strategy>"


class WrongCore(Core):
    """Answers every guided prompt wrongly, without network: ``answer(prompt)``."""

    backend, model = "fake", "wrong"

    def __init__(self, answer):
        self.answer = answer

    def complete(self, request: CoreRequest) -> CoreResponse:
        text = self.answer(request.messages[-1].content)
        return CoreResponse(text=text, input_tokens=10, output_tokens=10, latency_s=0.0, backend="fake",
                            model="wrong")


def _first_turn(env, index: int) -> tuple[str, dict]:
    env.reset(options={"index": index})
    obs, *_, info = env.step(GUIDE)
    assert info["reward_is_task_outcome"], info.get("error")
    return obs, info


@pytest.mark.parametrize("split", ["test", "train"])
def test_no_gsm8k_revision_observation_holds_the_gold(split):
    golds: dict[str, str] = {}

    def wrong(prompt: str) -> str:  # gold + 1 (never the gold); the reply carries no other number
        gold = reference_value(golds[prompt])
        return f"So the result is \\boxed{{{gold + 1}}}"

    env = gym.make("GCoP-GSM8K-v0", core=WrongCore(wrong), split=split, data_files=str(GSM8K_DIR), max_turns=2,
                   gamma=0.0, kappa=0.0, cache=False).unwrapped
    from gcop_env.step.prompts import core_prompt

    for p in env.problems:
        golds[core_prompt(p.question, "math", STRATEGY)] = p.reference
    checked = 0
    for index, problem in enumerate(env.problems):
        obs, info = _first_turn(env, index)
        gold = reference_value(problem.reference)
        feedback = info["feedback"]["text"]
        # the observation is built only from the problem, the strategy, the core's answer and the feedback ...
        assert obs == revision_prompt(problem.question, 2, 2, feedback, strategy=STRATEGY, answer=info["core_output"])
        # ... and neither the feedback nor the core's (wrong) answer states the gold
        for text in (feedback, info["core_output"]):
            numbers = [normalize_number(m) for m in re.findall(r"-?\d[\d,]*(?:\.\d+)?(?:/\d+)?", text)]
            assert gold not in numbers, (problem.task_id, text)
        assert str(problem.reference) not in feedback
        checked += 1
    assert checked == len(env.problems) == {"test": 1319, "train": 7473}[split]
    env.close()


def _distinctive_lines(source: str, shown: str) -> set[str]:
    """Lines of a reward test that say something (asserts, calls, data) and were not already shown."""
    lines = set()
    for line in source.splitlines():
        line = line.strip()
        if len(line) < 12 or line.startswith(("def ", "class ", "#", "import ", "from ", "@")):
            continue
        if line not in shown:
            lines.add(line)
    return lines


def _none_returning_code(entry_point: str) -> str:
    return f"```python\ndef {entry_point}(*args, **kwargs):\n    return None\n```"


def test_no_kodcode_observation_holds_a_reward_test():
    env = gym.make("GCoP-KodCode-v0", core=WrongCore(lambda prompt: _none_returning_code(_entry(prompt))),
                   split="all", data_files=str(KODCODE_SAMPLE), max_turns=2, gamma=0.0, kappa=0.0, cache=False,
                   sandbox="process", sandbox_options={"pool_size": 2}).unwrapped
    entries = {p.question: p.metadata["entry_point"] for p in env.problems}
    _entry.entries = entries
    counts = {"split": 0, "status": 0}
    started = time.monotonic()
    for index, problem in enumerate(env.problems):
        obs, info = _first_turn(env, index)
        split = split_pytest_file(problem.reference)
        kind = info["feedback_split"]["kind"]
        if split is None:
            assert kind == "status" and info["feedback"]["kind"] == "status"
            counts["status"] += 1
            reward_source, shown = problem.reference, problem.question
            # status-only feedback runs no test and names none
            assert not any(name in obs for name in unit_names(problem.reference) if name not in problem.question)
        else:
            assert kind == "split" and info["feedback_split"]["reward_tests"] == len(split.reward_units) >= 1
            counts["split"] += 1
            reward_source, shown = split.reward_source, problem.question + split.feedback_source
            # the reward R came from the reward units alone
            assert all(t["test"].split("::")[1].split("[")[0] not in split.feedback_units
                       for t in info["validation"]["details"].get("failures", []))
            for name in split.reward_units:
                if name not in problem.question:  # one "prefill" row's question quotes its own tests
                    assert name not in obs, (problem.task_id, name)
        for line in _distinctive_lines(reward_source, shown):
            assert line not in obs, (problem.task_id, line)
    assert counts == {"split": 129, "status": 41}, counts  # the numbers docs/multi-turn.md states
    print(f"KodCode sample: {counts} in {time.monotonic() - started:.0f}s")
    env.close()


def _entry(prompt: str) -> str:
    return next(e for q, e in _entry.entries.items() if q.strip() in prompt)


def test_no_humaneval_observation_holds_check_content():
    problems = {}

    def answer(prompt: str) -> str:
        problem = next(p for q, p in problems.items() if q.strip() in prompt)
        return _none_returning_code(problem.metadata["entry_point"])

    env = gym.make("GCoP-HumanEval-v0", core=WrongCore(answer), max_turns=2, gamma=0.0, kappa=0.0, cache=False,
                   sandbox="process", sandbox_options={"pool_size": 2}).unwrapped
    problems.update({p.question: p for p in env.problems})
    kinds = {"examples": 0, "status": 0}
    for index, problem in enumerate(env.problems):
        obs, info = _first_turn(env, index)
        kinds[info["feedback_split"]["kind"]] += 1
        for line in _distinctive_lines(problem.reference, problem.question):
            assert line not in obs, (problem.task_id, line)
    assert kinds == {"examples": 122, "status": 42}, kinds
    # after vetting against the reference solution some examples were dropped (HumanEval/47, 130, 148)
    vetted = env.episodes.feedback._vetted
    parsed = sum(len(env.episodes.feedback.prepare(p).feedback_units) for p in env.problems)
    kept = sum(len(v.feedback_units) for v in vetted.values())
    print(f"HumanEval: {kinds}; {kept} of {parsed} examples kept after vetting, on {len(vetted)} problems")
    assert (len(vetted), parsed, kept) == (122, 342, 338)  # the numbers docs/multi-turn.md states
    assert all(v.feedback_tests is not None for v in vetted.values())
    env.close()


SNOOP = '''```python
import os
import re

READ_TESTS = {read_tests}


def _snoop():
    """List every file near the run and read every one that is not a test file (bytecode caches,
    leftovers of earlier runs), keeping each string that names a test: what the feedback would show."""
    found, seen = [], 0
    roots = [os.getcwd(), os.path.dirname(os.getcwd()), "/tmp", os.path.expanduser("~")]
    for root in roots:
        for folder, dirs, files in os.walk(root):
            if folder.count(os.sep) - root.count(os.sep) > 4:
                dirs[:] = []
                continue
            for name in files:
                seen += 1
                if seen > 5000:
                    return found
                path = os.path.join(folder, name)
                found.append("FILE " + path)
                if name.endswith(".py") and name.startswith(("te" + "st", "conf")) and not READ_TESTS:
                    continue  # (READ_TESTS False) leave the test files alone: the monitor catches reading them
                try:
                    with open(path, "rb") as handle:
                        data = handle.read(500000)
                except OSError:
                    continue
                found += [m.decode("latin-1") for m in re.findall(rb"test_[A-Za-z0-9_]{3,}", data)]
    return found


_FOUND = _snoop()


def {entry}(*args, **kwargs):
    raise AssertionError(" ".join(_FOUND)[-30000:])
```'''


@pytest.mark.parametrize("read_tests", [False, True])
@pytest.mark.parametrize("backend", ["process", pytest.param("docker", marks=pytest.mark.docker)])
def test_code_that_searches_the_sandbox_for_the_reward_tests_finds_none(backend, read_tests):
    """An attack on the split: the core's code reads every file it can reach in the feedback run
    (bytecode caches and leftovers; with ``read_tests`` the test files too, by computed names) and
    fails with every test name it found, so that the feedback would show it. No reward test shows."""
    if backend == "docker":
        from _sandbox_support import require_docker
        require_docker()
    from gcop_env.validators.kodcode import load_kodcode

    problems = [p for p in load_kodcode("all", data_files=str(KODCODE_SAMPLE))
                if split_pytest_file(p.reference) is not None and "def test_" not in p.question][:3]
    by_question = {p.question: p for p in problems}

    def snoop(prompt: str) -> str:
        problem = next(p for q, p in by_question.items() if q.strip() in prompt)
        return SNOOP.replace("{entry}", problem.metadata["entry_point"]).replace("{read_tests}", str(read_tests))

    env = gym.make("GCoP-KodCode-v0", core=WrongCore(snoop), split="all", data_files=str(KODCODE_SAMPLE),
                   max_turns=2, gamma=0.0, kappa=0.0, cache=False, sandbox=backend,
                   sandbox_options={"pool_size": 1}).unwrapped
    for problem in problems:
        obs, info = _first_turn(env, env._index[problem.task_id])
        split = split_pytest_file(problem.reference)
        assert info["feedback"]["kind"] in ("tests", "status")
        if not read_tests:  # the attack ran in the feedback run (it was not stopped before)
            assert info["feedback"]["kind"] == "tests" and "FILE " in obs, info["feedback"]
        for name in split.reward_units:
            assert name not in obs, (backend, problem.task_id, name)
        for line in _distinctive_lines(split.reward_source, problem.question + split.feedback_source):
            assert line not in obs, (backend, problem.task_id, line)
    env.close()
