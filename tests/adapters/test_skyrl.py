"""SkyRL-gym adapter against the real ``skyrl-gym`` library (the ``[adapters]`` extra)."""

from __future__ import annotations

import pytest
from support import GOOD_GUIDE
from fake_llm import status

skyrl_gym = pytest.importorskip("skyrl_gym", reason="skyrl-gym is not installed: pip install 'gcop-env[adapters]'")

from omegaconf import DictConfig  # noqa: E402
from skyrl_gym.envs.base_text_env import BaseTextEnv  # noqa: E402

from gcop_env.adapters.skyrl import SkyRLGuideEnv, register_skyrl_env, skyrl_dataset_rows  # noqa: E402


def env_config(server, gsm8k_dir, **extra):
    # as SkyRL's YAML gives it: plain values (RetryPolicy as a dict, as spec.to_json writes it)
    return DictConfig({"env_class": "gcop", "core": f"openai:solver@{server.openai_base_url}", "split": "test",
                       "data_files": str(gsm8k_dir), "limit": 20, "beta": 0.1, "gamma": 0.0, "kappa": 0.0,
                       "retry": {"max_attempts": 1}, "infra_backoff_s": 0.0, **extra})


def test_make_init_step_returns_done_with_the_shaped_reward_and_info(solver_server, gsm8k_dir):
    env_id = register_skyrl_env()
    assert register_skyrl_env() == env_id
    config = env_config(solver_server, gsm8k_dir)
    rows = skyrl_dataset_rows(SkyRLGuideEnv(config, {"task_id": "x"}).env)  # any env of the config lists the rows
    row = rows[3]
    env = skyrl_gym.make(env_id, env_config=config, extras={"task_id": row["task_id"], "max_turns": 1})
    assert isinstance(env, BaseTextEnv)
    prompt, info = env.init(row["prompt"])
    assert prompt == row["prompt"] and info["task_id"] == row["task_id"]
    out = env.step(GOOD_GUIDE)
    assert out["done"] is True and out["observations"] == [] and out["reward"] == pytest.approx(1.1)
    assert out["metadata"]["task_id"] == row["task_id"] and out["metadata"]["reward_components"]["task_reward"] == 1.0
    metrics = env.get_metrics()
    assert metrics["task_reward"] == 1.0 and metrics["infra_error"] == 0.0 and metrics["shaped"] == pytest.approx(1.1)
    assert SkyRLGuideEnv.aggregate_metrics([metrics, {**metrics, "task_reward": 0.0}])["task_reward"] == 0.5
    env.close()


def test_task_id_from_extra_info_and_a_prompt_built_when_the_row_has_none(solver_server, gsm8k_dir):
    env = SkyRLGuideEnv(env_config(solver_server, gsm8k_dir), {"extra_info": {"task_id": "gsm8k/test/5"}})
    prompt, _ = env.init(None)
    assert len(prompt) == 1 and "<strategy>" in prompt[0]["content"]
    with pytest.raises(KeyError, match="no 'task_id'"):
        SkyRLGuideEnv(env_config(solver_server, gsm8k_dir), {"reward_spec": {}})


def test_a_group_of_trajectories_draws_distinct_core_samples(solver_server, gsm8k_dir):
    config = env_config(solver_server, gsm8k_dir, temperature=0.8, cache=None)
    group = [SkyRLGuideEnv(config, {"task_id": "gsm8k/test/2"}) for _ in range(4)]
    for env in group:
        env.init(None)
    indices = [env.step(GOOD_GUIDE)["metadata"]["core_sample_index"] for env in group]
    assert sorted(indices) == [0, 1, 2, 3] and solver_server.count() == 4


def test_infra_failure_is_masked_and_counted_in_metrics(solver_server, gsm8k_dir):
    env = SkyRLGuideEnv(env_config(solver_server, gsm8k_dir, cache=False, infra_retries=1), {"task_id": "gsm8k/test/0"})
    env.init(None)
    solver_server.faults.extend([status(500), status(500)])
    out = env.step(GOOD_GUIDE)
    assert out["done"] and out["reward"] == 0.0 and out["metadata"]["infra_masked"]
    assert env.get_metrics()["infra_error"] == 1.0


def test_skyrl_example_runs(solver_server, gsm8k_dir, capsys):
    import runpy

    from support import REPO_ROOT

    main = runpy.run_path(str(REPO_ROOT / "examples" / "skyrl_env.py"))["main"]
    aggregated = main(["--core", f"openai:solver@{solver_server.openai_base_url}", "--data-files", str(gsm8k_dir),
                       "--limit", "3"])
    assert aggregated["task_reward"] == 1.0 and aggregated["infra_error"] == 0.0
    out = capsys.readouterr().out
    assert out.count("done=True") == 3 and "aggregated:" in out


def test_closing_a_trajectory_leaves_the_shared_core_to_the_others(solver_server, gsm8k_dir):
    config = env_config(solver_server, gsm8k_dir)
    first, second = (SkyRLGuideEnv(config, {"task_id": f"gsm8k/test/{i}"}) for i in (0, 1))
    assert first.episode.core is second.episode.core  # one set of parts per process and configuration
    first.init(None)
    assert first.step(GOOD_GUIDE)["reward"] == pytest.approx(1.1)
    client = first.episode.core.inner._client
    first.close()
    second.init(None)
    assert second.step(GOOD_GUIDE)["reward"] == pytest.approx(1.1)
    assert second.episode.core.inner._client is client  # not closed under the second trajectory
    second.close()


def test_a_multi_turn_trajectory_appends_the_revision_prompt_until_done(fake_llm, gsm8k_dir):
    from support import MT_FIRST, FeedbackSolver, reviser

    server = fake_llm(FeedbackSolver())
    env = SkyRLGuideEnv(env_config(server, gsm8k_dir, env_id="GCoP-GSM8K-MultiTurn-v0"), {"task_id": "gsm8k/test/2"})
    assert env.max_turns == 3
    env.init(None)
    out = env.step(MT_FIRST)
    assert out["done"] is False and len(out["observations"]) == 1
    revision = out["observations"][0]
    assert revision["role"] == "user" and "Feedback:" in revision["content"]
    out = env.step(reviser(revision["content"]))
    assert out["done"] is True and out["observations"] == [] and out["metadata"]["success"]
    metrics = env.get_metrics()
    assert metrics["turns"] == 2.0 and metrics["success"] == 1.0 and metrics["task_reward"] == 1.0
    env.close()
