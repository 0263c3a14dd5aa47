"""``gcop eval --guide vllm:PATH?OPTIONS`` with a real vLLM engine (CPU), against the ``hf:`` guide.

What must match between the two guides, and why: given the same guide text, everything after the
guide is the same code (strategy extraction, the core call, the validator, the cost accounting), so
for identical guide outputs the records must agree on the strategy, the core's reply, the status,
the reward, the core's calls, tokens and dollars, and the summary's accuracy, executability,
structure rate and core cost. The guide outputs themselves agree here because the guide is greedy
and fine-tuned to large margins; in general two engines sample different tokens (other kernels,
other random streams), so sampled outputs are compared only for reproducibility within vLLM.
"""

from __future__ import annotations

import pytest

from conftest import (GOOD_GUIDE, ScriptedSolver, gcop_argv, gsm8k_golds, read_rows, read_summary,  # noqa: F401
                      run_watched)
from fake_llm import FakeLLMServer

# A small KV cache and no torch.compile: vLLM starts in seconds on a CPU (these are engine options of the spec)
ENGINE = "kv_cache_memory_bytes=64MiB&enforce_eager=true&dtype=float32&max_model_len=1024"
LIMIT = "4"


@pytest.fixture
def core():
    with FakeLLMServer(ScriptedSolver(gsm8k_golds())) as server:
        yield server


def eval_argv(gsm8k, core, guide: str, out, *extra: str) -> list[str]:
    return gcop_argv("eval", "--task", "gsm8k", "--data-files", str(gsm8k), "--split", "test", "--limit", LIMIT,
                     "--core", f"openai:fake-core@{core.openai_base_url}", "--guide", guide,
                     "--guide-max-tokens", "96", "--out", str(out), "--no-progress", "--no-preflight", *extra)


def _core_cost(row: dict) -> dict:
    return {k: v for k, v in row["cost"]["core"].items() if k != "latency_s"}


def test_vllm_guide_matches_the_hf_guide_on_identical_outputs(guides, gsm8k, core, tmp_path):
    greedy = ("--guide-temperature", "0")
    vllm_out, hf_out = tmp_path / "vllm", tmp_path / "hf"
    env = {"GCOP_CACHE_DIR": str(tmp_path / "cache-vllm")}
    run = run_watched(eval_argv(gsm8k, core, f"vllm:{guides['sft']}?{ENGINE}", vllm_out, *greedy), tmp_path, env)
    assert run.returncode == 0, run.stderr[-3000:]
    print(f"vllm: guided eval of {LIMIT} problems in {run.seconds:.1f} s")
    assert run.sockets and not run.outward_sockets(), run.outward_sockets()  # vLLM's queues: loopback only
    assert any(name.startswith("VLLM") for _, name in run.children), run.children  # the engine's processes
    core_requests = core.count()
    hf = run_watched(eval_argv(gsm8k, core, f"hf:{guides['sft']}", hf_out, *greedy), tmp_path,
                     {"GCOP_CACHE_DIR": str(tmp_path / "cache-hf")})
    assert hf.returncode == 0, hf.stderr[-3000:]
    assert core.count() == 2 * core_requests  # each run paid its own calls (separate caches)

    v_rows, h_rows = read_rows(vllm_out), read_rows(hf_out)
    assert [r["task_id"] for r in v_rows] == [r["task_id"] for r in h_rows] and len(v_rows) == int(LIMIT)
    assert sum(r["structure_ok"] for r in v_rows) >= 2  # the fine-tuned guide writes strategies: the core is used
    for v, h in zip(v_rows, h_rows):
        assert v["guide_output"] == h["guide_output"]
        for key in ("strategy", "structure_ok", "core_output", "status", "reward", "success", "error"):
            assert v[key] == h[key], key
        assert _core_cost(v) == _core_cost(h)
        # the same prompt through the same tokenizer and chat template; the output's tokens up to the stop
        assert v["cost"]["guide"]["input_tokens"] == h["cost"]["guide"]["input_tokens"]
        assert v["cost"]["guide"]["output_tokens"] == h["cost"]["guide"]["output_tokens"]
    vm, hm = read_summary(vllm_out)["metrics"], read_summary(hf_out)["metrics"]
    for key in ("accuracy", "executability", "structure_ok_rate", "n_problems", "n_infra", "status_counts"):
        assert vm[key] == hm[key], key
    assert vm["cost_per_problem"]["core"] == hm["cost_per_problem"]["core"]
    assert vm["cost_per_problem"]["guide"]["tokens"] == hm["cost_per_problem"]["guide"]["tokens"]
    assert read_summary(vllm_out)["condition"]["guide"] == f"vllm:{guides['sft']}?dtype=float32&max_model_len=1024"

    # a finished run re-run: nothing generated, no engine built, no core call
    again = run_watched(eval_argv(gsm8k, core, f"vllm:{guides['sft']}?{ENGINE}", vllm_out, *greedy), tmp_path, env)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "guide 0 live" in again.stdout and not again.children, again.children
    assert core.count() == 2 * core_requests


def test_vllm_sampling_is_seeded_per_sample(guides, gsm8k, core, tmp_path):
    """Two samples of a problem differ; the same command with the cache off draws the same ones again."""
    runs = []
    for i in range(2):
        out = tmp_path / f"o{i}"
        run = run_watched(eval_argv(gsm8k, core, f"vllm:{guides['raw']}?{ENGINE}", out, "--guide-samples", "2",
                                    "--guide-temperature", "1.0", "--cache", "off", "--limit", "2"), tmp_path)
        assert run.returncode == 0, run.stderr[-3000:]
        assert not run.outward_sockets(), run.outward_sockets()
        runs.append({(r["task_id"], r["sample"]): r["guide_output"] for r in read_rows(out)})
    assert runs[0] == runs[1] and len(runs[0]) == 4
    by_problem = {}
    for (task_id, sample), text in runs[0].items():
        by_problem.setdefault(task_id, set()).add(text)
    assert all(len(texts) == 2 for texts in by_problem.values())


def test_an_engine_that_cannot_start_is_one_fatal_error(guides, gsm8k, core, tmp_path):
    """A KV cache larger than the machine: vLLM refuses in its engine process. The run stops with one
    line naming vLLM's reason and the option to change; no row is written, the engine is built once,
    nothing is paid."""
    out = tmp_path / "o"
    run = run_watched(eval_argv(gsm8k, core, f"vllm:{guides['raw']}?kv_cache_memory_bytes=1024TiB&enforce_eager=true",
                                out, "--limit", "6", "--guide-batch-size", "2"), tmp_path)
    assert run.returncode == 2, run.stderr[-3000:]
    errors = [line for line in run.stderr.splitlines() if line.startswith("gcop eval: error:")]
    assert len(errors) == 1, errors
    assert "vLLM could not build its engine" in errors[0] and "Decrease --kv-cache-memory-bytes" in errors[0]
    assert "?kv_cache_memory_bytes=" in errors[0] and "VLLM_CPU_KVCACHE_SPACE" in errors[0]
    engine_cores = {pid for pid, name in run.children if "EngineCore" in name}
    assert len(engine_cores) == 1, run.children  # one try, not one per batch of 2
    assert (run.stdout + run.stderr).count("EngineCore failed to start") == 1
    assert not (out / "records.jsonl").exists() or read_rows(out) == []
    assert core.count() == 0


def test_the_cpu_build_is_found_under_its_distribution_name():
    """vllm-cpu installs the ``vllm`` package without ``vllm`` metadata (vLLM's own CLI, hence ``trl
    vllm-serve``, fails on that); gcop's version check and TRL's both find it."""
    import importlib.metadata

    import vllm
    from trl.import_utils import _is_package_available

    from gcop_env.evaluation.guides import check_vllm_version, vllm_version

    with pytest.raises(importlib.metadata.PackageNotFoundError):
        importlib.metadata.version("vllm")
    assert vllm_version() == importlib.metadata.version("vllm-cpu") == vllm.__version__.split("+")[0]
    assert check_vllm_version() == vllm_version()
    assert _is_package_available("vllm", return_version=True) == (True, vllm_version())
