"""Structure-aware GRPO: TRL's ``GRPOTrainer`` with the environment's shaped reward.

The reward function is a thin adapter over the env's :class:`GuideScorer`: the environment does
the work (structure check, concurrent core calls, validator, baseline, judge, cost). TRL gets it as
an ``async def`` by default (:mod:`gcop_env.trainers.async_reward`, ``--reward-mode async``, at most
``--max-inflight`` steps in flight per process) or as the plain :class:`ShapedReward`. For each
completion it returns the shaped reward, or ``None`` when the step failed for infrastructure
reasons. The trainer is :class:`~gcop_env.trainers.grpo_trainer.InfraAwareGRPOTrainer`, which
drops such completions from the batch after scoring: they are out of the group baseline, the
loss, the KL term and the loss normaliser, so an API outage never looks like a wrong answer and
never shrinks the update of the completions that were scored.

Metrics (TRL logging, so ``report_to`` TensorBoard/W&B shows them), averaged per logging step:

=========================  ===============================================================
``gcop/structure_ok``      share of scored completions that are one well-formed strategy (I_str)
``gcop/task_reward``       R of the guided core, over scored completions (malformed count 0)
``gcop/judge_score``       J, over well-formed completions
``gcop/reward_delta``      ΔR = R(guided) − R(unguided), over well-formed completions
``gcop/harm_penalty``      κ·max(0, −ΔR), over well-formed completions
``gcop/cost``              T per completion (USD or thousands of tokens, ``cost_unit``)
``gcop/cost_usd``          nominal USD of the batch's core, baseline and judge calls
``gcop/spent_usd``         USD actually paid for the batch (cache hits are free)
``gcop/shaped``            the shaped reward, over scored completions
``gcop/infra_error_rate``  share of completions left unscored (infrastructure failures)
``gcop/tamper_rate``       share of scored completions whose core code was caught gaming the tests
``gcop/unscored_dropped``  completions dropped from this process's loss batch (logged by the trainer)
=========================  ===============================================================

vLLM: ``use_vllm=True`` with ``vllm_mode="colocate"`` runs vLLM inside each training process;
``vllm_mode="server"`` talks to ``trl vllm-serve --model GUIDE`` on other GPUs. For several GPUs::

    CUDA_VISIBLE_DEVICES=0 trl vllm-serve --model runs/sft --host 127.0.0.1 --port 8000 &
    CUDA_VISIBLE_DEVICES=1,2,3 accelerate launch --multi_gpu --num_processes 3 -m gcop_env.cli grpo \\
        --guide runs/sft --use-vllm --vllm-mode server --vllm-server-base-url http://127.0.0.1:8000 ...

The vLLM versions are checked at start-up (:func:`~gcop_env.trainers.grpo_trainer.check_vllm_setup`);
the README's "vLLM generation" section has the commands and what was verified on CPU.

Each process scores its own slice of every batch (its own reward pool, scorer and core client;
the response cache file is shared); :func:`run_totals` adds their totals up for ``summary.json``.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from gcop_env.cores.budget import Budget, StopOrBudget
from gcop_env.cores import sampling_report
from gcop_env.cores.options import core_from_options
from gcop_env.cores.base import SamplingParams
from gcop_env.problem import Problem
from gcop_env.step.prompts import guide_prompt
from gcop_env.recipe import Recipe, read_recipe, write_recipe
from gcop_env.envs.env import SAMPLE_STREAMS, SAMPLES_PER_STREAM
from gcop_env.step.scoring import GuideScorer, StepOutcome, core_is_deterministic
from gcop_env.envs.tasks import get_task
from gcop_env.trainers.config import GRPORunConfig, write_config
from gcop_env.trainers.training import (RUN_CONFIG, TrainSummary, common_trainer_args, last_checkpoint, load_guide,
                                        mean, save_final_model, stop_callback)
from gcop_env.utils.environ import env_int
from gcop_env.utils.files import write_json

log = logging.getLogger(__name__)

METRIC_PREFIX = "gcop/"


def log_batch(log_metric: Callable[[str, float], None], metrics: dict[str, list[float]], n: int, errors: int,
              cost_usd: float, spent_usd: float) -> None:
    """Log a scored batch of ``n`` completions: each metric's mean, the batch's cost and its infra-error rate."""
    for name, values in metrics.items():
        if values:
            log_metric(METRIC_PREFIX + name, sum(values) / len(values))
    log_metric(METRIC_PREFIX + "cost_usd", cost_usd)
    log_metric(METRIC_PREFIX + "spent_usd", spent_usd)
    log_metric(METRIC_PREFIX + "infra_error_rate", errors / max(1, n))


@dataclass
class RewardTotals:
    """Running totals over every completion the reward function scored."""

    completions: int = 0
    infra_errors: int = 0
    structure_ok: int = 0
    sums: dict[str, float] = field(default_factory=lambda: Counter())
    counts: dict[str, int] = field(default_factory=lambda: Counter())
    cost_usd: float = 0.0
    spent_usd: float = 0.0

    def add(self, name: str, values: list[float]) -> None:
        self.sums[name] += sum(values)
        self.counts[name] += len(values)

    def means(self) -> dict[str, float]:
        return {name: self.sums[name] / self.counts[name] for name in self.sums if self.counts[name]}

    def add_batch(self, metrics: dict[str, list[float]], n: int, errors: int, cost_usd: float,
                  spent_usd: float) -> None:
        """Add one scored batch of ``n`` completions (the caller holds the reward's lock)."""
        self.completions += n
        self.infra_errors += errors
        self.structure_ok += int(sum(metrics["structure_ok"]))
        self.cost_usd += cost_usd
        self.spent_usd += spent_usd
        for name, values in metrics.items():
            self.add(name, values)

    def merged(self, others: Sequence["RewardTotals"]) -> "RewardTotals":
        """These totals plus ``others`` (e.g. every training process's, each scoring its own slice)."""
        out = RewardTotals()
        for t in (self, *others):
            out.completions += t.completions
            out.infra_errors += t.infra_errors
            out.structure_ok += t.structure_ok
            out.cost_usd += t.cost_usd
            out.spent_usd += t.spent_usd
            for name in t.sums:
                out.sums[name] += t.sums[name]
                out.counts[name] += t.counts[name]
        return out


def run_totals(trainer: Any, totals: RewardTotals) -> RewardTotals:
    """The reward totals of the whole run: under ``accelerate launch`` each process scores only its
    slice of every batch, so its own totals are a part (a collective: every process must call it)."""
    accelerator = trainer.accelerator
    if accelerator.num_processes == 1:
        return totals
    from accelerate.utils import gather_object

    return RewardTotals().merged(gather_object([totals]))


def batch_metrics(outcomes: Sequence[StepOutcome]) -> dict[str, list[float]]:
    """Per-term values of one batch, each over the completions where the term is defined."""
    scored = [o for o in outcomes if o.error is None]
    formed = [o for o in scored if o.components.structure_ok]
    return {
        "structure_ok": [float(o.components.structure_ok) for o in scored],
        "task_reward": [o.components.task_reward for o in scored],
        "judge_score": [o.components.judge_score for o in formed],
        "reward_delta": [o.components.reward_delta for o in formed],
        "harm_penalty": [o.components.harm_penalty for o in formed],
        "cost": [o.components.cost for o in scored],
        "shaped": [o.components.shaped for o in scored],
    }


class ShapedReward:
    """A TRL reward function: the environment's shaped reward per completion, None on infra failure.

    The dataset rows carry ``task_id``; TRL passes it (one per completion) as a keyword argument.
    """

    __name__ = "gcop_shaped"  # TRL names the reward column after the function

    def __init__(self, scorer: GuideScorer, problems: Sequence[Problem], max_workers: int = 8):
        self.scorer = scorer
        self.problems = {p.task_id: p for p in problems}
        self.max_workers = max_workers
        self.totals = RewardTotals()
        self._lock = threading.Lock()

    @staticmethod
    def _text(completion: Any) -> str:
        if isinstance(completion, str):
            return completion
        # conversational: a list of messages, the guide's reply is the assistant content
        return "".join(m.get("content") or "" for m in completion if m.get("role", "assistant") == "assistant")

    def sample_indices(self, items: Sequence[tuple[Problem, str]]) -> list[int]:
        """The core sample each completion asks for: when the core samples, identical completions to
        one problem in a batch get distinct samples, not one cached answer; when it is deterministic
        they all ask for sample 0, so a repeated completion is paid once (the rest are cache hits).

        Under ``accelerate launch`` a GRPO group can span processes, each scoring its own slice: when
        the core samples, process ``RANK`` numbers its samples from ``RANK × SAMPLES_PER_STREAM``, so
        the same completion in two processes' slices gets two draws, not the first one's cached answer.
        """
        if not self._core_samples():  # a deterministic core answers a repeat alike: one call, one price
            return [0] * len(items)
        seen: Counter = Counter()
        first = self._process_stream() * SAMPLES_PER_STREAM
        indices = []
        for problem, text in items:
            indices.append(first + seen[(problem.task_id, text)])
            seen[(problem.task_id, text)] += 1
        return indices

    def _process_stream(self) -> int:
        return env_int("RANK", 0) % SAMPLE_STREAMS

    def _core_samples(self) -> bool:
        return not core_is_deterministic(self.scorer.core, self.scorer.sampling)

    def scored(self, items: Sequence[tuple[Problem, str]], indices: Sequence[int],
               outcomes: Sequence[StepOutcome]) -> None:
        """Called after each batch is scored (a hook for subclasses that keep sample counters)."""

    def task_ids(self, task_id: list[str] | None, environments: list | None) -> list[str]:
        """Each completion's problem id, from the dataset's ``task_id`` column."""
        if task_id is None:
            raise KeyError("no problem for the completions: the dataset needs a 'task_id' column "
                           "(build it with grpo_dataset(problems))")
        return list(task_id)

    def batch(self, completions: list, task_id: list[str] | None = None,
              environments: list | None = None) -> tuple[list[tuple[Problem, str]], list[int]]:
        """The (problem, guide text) pairs of a TRL batch and the core sample each one asks for."""
        ids = self.task_ids(task_id, environments)
        items = [(self.problems[tid], self._text(c)) for tid, c in zip(ids, completions)]
        return items, self.sample_indices(items)

    def record(self, items: Sequence[tuple[Problem, str]], indices: Sequence[int], outcomes: Sequence[StepOutcome],
               log_metric: Callable[[str, float], None] | None = None,
               log_extra: Callable[[str, list], None] | None = None) -> list[float | None]:
        """Add a scored batch to the totals, log its ``gcop/*`` metrics and give TRL its rewards."""
        self.scored(items, indices, outcomes)
        metrics = batch_metrics(outcomes)
        errors = sum(o.error is not None for o in outcomes)
        cost_usd = sum(o.cost.as_dict()["total_usd"] for o in outcomes)
        spent_usd = sum(o.cost.as_dict()["total_spent_usd"] for o in outcomes)
        with self._lock:
            self.totals.add_batch(metrics, len(outcomes), errors, cost_usd, spent_usd)
        if log_metric is not None:
            log_batch(log_metric, metrics, len(outcomes), errors, cost_usd, spent_usd)
            # Status "tampered": the reward-hack monitor caught the core's code gaming the tests.
            scored = [o for o in outcomes if o.error is None]
            tampered = sum(o.validation is not None and o.validation.status.value == "tampered" for o in scored)
            log_metric(METRIC_PREFIX + "tamper_rate", tampered / max(1, len(scored)))
        if log_extra is not None:
            log_extra("structure_ok", [o.components.structure_ok for o in outcomes])
            log_extra("task_reward", [None if o.error else o.components.task_reward for o in outcomes])
            log_extra("infra_error", [o.error for o in outcomes])
        return [o.reward for o in outcomes]

    def __call__(self, prompts: list, completions: list, task_id: list[str] | None = None,
                 log_metric: Callable[[str, float], None] | None = None,
                 log_extra: Callable[[str, list], None] | None = None, environments: list | None = None,
                 **_: Any) -> list[float | None]:
        items, indices = self.batch(completions, task_id, environments)
        outcomes = self.score_items(items, indices)
        return self.record(items, indices, outcomes, log_metric, log_extra)

    def score_item(self, problem: Problem, text: str, index: int) -> StepOutcome:
        """Score one completion (what the async reward runs on its pool)."""
        return self.scorer.score(problem, text, index)

    def score_items(self, items: Sequence[tuple[Problem, str]], indices: Sequence[int]) -> list[StepOutcome]:
        """Score a batch, ``max_workers`` steps at once; outcomes in input order."""
        return self.scorer.score_many(items, max_workers=self.max_workers, sample_indices=indices)

    def close(self) -> None:
        self.scorer.close()


def grpo_dataset(problems: Sequence[Problem]) -> Any:
    """Conversational prompts (the environment's observation) with the problem's id alongside."""
    from datasets import Dataset

    return Dataset.from_list([{"prompt": [{"role": "user", "content": guide_prompt(p.question)}],
                               "task_id": p.task_id} for p in problems])


def build_scorer(config: GRPORunConfig, budget: Budget | None = None) -> GuideScorer:
    """The env's scorer for training; its core, judge and baseline calls pay from ``budget``."""
    task = get_task(config.task)
    core = core_from_options(config.core, config, budget)
    reward = config.reward_config()
    judge = core_from_options(config.judge, config, budget) if config.judge and reward.gamma > 0 else None
    return GuideScorer(task.make_validator(config.validator_options), core, judge_core=judge, reward=reward,
                       sampling=SamplingParams(config.core_temperature, config.core_top_p, config.core_max_tokens),
                       judge_sampling=SamplingParams(0.0, 1.0, config.judge_max_tokens),
                       max_strategy_chars=config.max_strategy_chars, baseline_samples=config.baseline_samples,
                       structure_required=config.recipe != "advisor")


def load_problems(config: GRPORunConfig, split: str, limit: int | None) -> list[Problem]:
    problems = get_task(config.task).load(split=split, data_files=config.data_files)
    return problems[:limit] if limit else problems


def build_grpo_trainer(config: GRPORunConfig, scorer: GuideScorer | None = None) -> tuple[Any, Any]:
    """The configured TRL ``GRPOTrainer`` and its reward function (not yet trained).

    The reward function is an :class:`~gcop_env.trainers.async_reward.AsyncShapedReward` with
    ``reward_mode="async"`` (the default), a :class:`ShapedReward` with ``"sync"``; both have
    ``totals``, ``scorer`` and ``close()``.
    """
    if getattr(config, "max_turns", 1) > 1:  # multi-turn episodes: gcop_env.trainers.multiturn_grpo
        from gcop_env.trainers.multiturn_grpo import build_multiturn_grpo_trainer
        return build_multiturn_grpo_trainer(config, scorer)

    from trl import GRPOConfig

    from gcop_env.trainers.async_reward import AsyncShapedReward
    from gcop_env.trainers.grpo_trainer import InfraAwareGRPOTrainer

    problems = load_problems(config, config.split, config.limit)
    scorer = scorer or build_scorer(config)
    reward: Any = ShapedReward(scorer, problems, max_workers=config.max_workers)
    if config.reward_mode == "async":
        reward = AsyncShapedReward(reward, max_inflight=config.max_inflight)
    args = common_trainer_args(config)
    model, tokenizer, peft_config = load_guide(config.guide, config, bf16=args["bf16"])
    vllm: dict[str, Any] = {}
    if config.use_vllm:
        vllm = dict(use_vllm=True, vllm_mode=config.vllm_mode, vllm_gpu_memory_utilization=config.vllm_gpu_memory_utilization)
        if config.vllm_server_base_url:
            vllm["vllm_server_base_url"] = config.vllm_server_base_url
    grpo_args = GRPOConfig(**args, beta=config.kl_coef, learning_rate=config.learning_rate,
                           weight_decay=config.weight_decay, num_generations=config.num_generations,
                           max_completion_length=config.max_completion_length, temperature=config.temperature,
                           top_p=config.top_p, **vllm, **config.trainer_args)
    trainer = InfraAwareGRPOTrainer(model=model, reward_funcs=[reward], args=grpo_args,
                                    train_dataset=grpo_dataset(problems), processing_class=tokenizer,
                                    peft_config=peft_config)
    return trainer, reward


def sample_reply(model: Any, tokenizer: Any, messages: list[dict[str, str]], temperature: float, top_p: float,
                 max_new_tokens: int) -> str:
    """One sampled reply of the guide to a chat (its template, the generation prompt added)."""
    import torch

    ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    ids = {k: v.to(model.device) for k, v in ids.items()}
    with torch.no_grad():
        out = model.generate(**ids, do_sample=True, temperature=temperature, top_p=top_p,
                             max_new_tokens=max_new_tokens, pad_token_id=tokenizer.pad_token_id)
    return tokenizer.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True)


def evaluate_guide(model: Any, tokenizer: Any, scorer: GuideScorer, problems: Sequence[Problem],
                   temperature: float, top_p: float, max_new_tokens: int) -> dict[str, Any]:
    """Sample one guide output per problem (the paper's eval sampling) and score it in the env."""
    model.eval()
    texts = [sample_reply(model, tokenizer, [{"role": "user", "content": guide_prompt(problem.question)}],
                          temperature, top_p, max_new_tokens) for problem in problems]
    outcomes = scorer.score_many(list(zip(problems, texts)))
    metrics = {f"eval_{k}": mean(v) for k, v in batch_metrics(outcomes).items()}
    metrics["eval_problems"] = len(problems)
    metrics["eval_samples"] = texts[:3]
    metrics["eval_infra_errors"] = sum(o.error is not None for o in outcomes)
    return metrics


def _scorer_cores(scorer: GuideScorer) -> list[Any]:
    cores = [scorer.core]
    if scorer.judge is not None and scorer.judge.core is not scorer.core:
        cores.append(scorer.judge.core)
    return cores


# Settings a finished run may be re-run with and still be the same run (how it calls the core, not what it trains).
RERUN_FREE_FIELDS = frozenset({"preflight", "max_usd", "max_total_tokens", "timeout_s", "max_retries", "retry_backoff_s",
                               "cache", "report_to", "max_workers", "max_inflight", "reward_mode"})


class FinishedRunMismatch(ValueError):
    """``output_dir`` holds a finished run of other settings: training it further would mix two runs."""


def finished_run(config: GRPORunConfig) -> TrainSummary | None:
    """The summary of the finished run in ``config.output_dir`` (its ``summary.json`` is written last, by
    the main process, only when training ended), or None when there is none.

    Re-running a finished run is a no-op: without this, resuming from its last checkpoint trained on past
    ``max_steps`` and paid the core again. A finished run of other settings raises
    :class:`FinishedRunMismatch` naming them."""
    out = Path(config.output_dir)
    summary_path = out / "summary.json"
    if not summary_path.is_file():
        return None
    try:
        saved = json.loads(summary_path.read_text(encoding="utf-8"))
        settings = json.loads((out / RUN_CONFIG).read_text(encoding="utf-8"))
        if not isinstance(saved, dict) or not isinstance(settings, dict):
            raise ValueError("not a JSON object")
    except (OSError, ValueError) as exc:
        raise FinishedRunMismatch(f"{out} holds a summary.json of a finished run, but its summary or {RUN_CONFIG} "
                                  f"cannot be read ({exc}); choose another --output-dir") from None
    now = json.loads(json.dumps(asdict(config), default=str))
    changed = sorted(k for k in set(settings) | set(now)
                     if k not in RERUN_FREE_FIELDS and settings.get(k) != now.get(k))
    if changed:
        detail = ", ".join(f"{k}: {settings.get(k)!r} there, {now.get(k)!r} now" for k in changed[:3])
        raise FinishedRunMismatch(f"{out} holds a finished gcop grpo run with other settings ({detail}); choose another "
                                  f"--output-dir (or delete {summary_path} to train it further from its last checkpoint)")
    return TrainSummary(command="grpo", output_dir=str(out), steps=int(saved.get("steps") or 0),
                        examples=int(saved.get("examples") or 0), train_runtime_s=0.0,
                        metrics={"already_finished": True})


def train_grpo(config: GRPORunConfig, scorer: GuideScorer | None = None, stop: Any = None) -> TrainSummary:
    """Run GRPO as configured. Writes ``run_config.json``, checkpoints, the model and ``summary.json``.

    ``stop`` (a :class:`gcop_env.utils.interrupt.StopRequest`): once set, training ends after the current
    step with a checkpoint saved; the summary's ``metrics["interrupted"]`` is True and no final model
    or evaluation is made. The same command resumes from the checkpoint.

    A finished run in ``config.output_dir`` (same settings) is not trained again: the summary it returns
    has ``metrics["already_finished"]`` (see :func:`finished_run`).

    ``config.max_usd`` / ``config.max_total_tokens``: a budget for the core, judge and baseline
    calls. A completion whose call it refuses is unscored (dropped from the loss, like an outage);
    training then ends after that step with a checkpoint, ``metrics["budget_exhausted"]`` is True,
    and no final model or evaluation is made. Re-running with a larger budget resumes.
    """
    done = finished_run(config)  # before anything is written, loaded or paid
    if done is not None:
        return done
    budget = Budget.from_limits(config.max_usd, config.max_total_tokens)
    if scorer is not None and budget is not None:
        for core in _scorer_cores(scorer):  # the given scorer's cores pay from this run's budget
            core.budget = budget
    write_config(config, Path(config.output_dir) / RUN_CONFIG)
    base_recipe = read_recipe(config.guide)  # before training: a broken record fails now, not after it
    if scorer is not None and scorer.structure_required != (config.recipe != "advisor"):
        raise ValueError(f"the given scorer has structure_required={scorer.structure_required}, which does not match "
                         f"recipe {config.recipe!r}")
    scorer = scorer or build_scorer(config, budget)
    if budget is not None:  # before any call: a model without a price cannot be held to a dollar cap
        budget.check_priced(_scorer_cores(scorer))
    if config.preflight:  # one tiny call per model before the guide loads or anything is spent
        from gcop_env.cores.preflight import preflight_grpo
        preflight_grpo(config, scorer)
    trainer, reward = build_grpo_trainer(config, scorer)
    halt = StopOrBudget(stop, budget)
    if stop is not None or budget is not None:
        trainer.add_callback(stop_callback(halt))
    started = time.monotonic()
    trainer.train(resume_from_checkpoint=last_checkpoint(config.output_dir))
    runtime = time.monotonic() - started
    if halt.requested:
        reward.close()
        metrics = {"interrupted": halt.stage == "interrupted", "budget_exhausted": halt.budget_exhausted,
                   "checkpoint": last_checkpoint(config.output_dir), "spent_usd": reward.totals.spent_usd,
                   "infra_errors": reward.totals.infra_errors}
        if budget is not None:
            metrics["budget"] = budget.status().as_dict()
        return TrainSummary(command="grpo", output_dir=config.output_dir, steps=trainer.state.global_step,
                            examples=len(trainer.train_dataset), train_runtime_s=runtime, metrics=metrics)
    model = save_final_model(trainer, trainer.processing_class, config.output_dir, merged_lora=config.lora)
    multi_turn = {"max_turns": config.max_turns, "credit": config.credit, "core_history": config.core_history} \
        if config.max_turns > 1 else {}
    write_recipe(config.output_dir, Recipe.ADVISOR if config.recipe == "advisor" else Recipe.EXECTUNE,
                 command="grpo", base_guide=config.guide, base_recipe=base_recipe, task=config.task, core=config.core,
                 reward=asdict(reward.scorer.reward), **multi_turn)
    t = run_totals(trainer, reward.totals)
    if not trainer.accelerator.is_main_process:  # one evaluation and one summary.json, by the main process
        reward.close()
        return TrainSummary(command="grpo", output_dir=config.output_dir, steps=trainer.state.global_step,
                            examples=len(trainer.train_dataset), train_runtime_s=runtime,
                            metrics={"process_index": trainer.accelerator.process_index})
    metrics: dict[str, Any] = {f"mean_{k}": v for k, v in t.means().items()}
    metrics.update(baseline_samples=reward.scorer.baseline_samples)
    if budget is not None:
        metrics["budget"] = budget.status().as_dict()
    metrics.update(completions=t.completions, infra_errors=t.infra_errors, cost_usd=t.cost_usd,
                   spent_usd=t.spent_usd, step_time_s=runtime / max(1, trainer.state.global_step),
                   core_sampling=sampling_report(reward.scorer.core, reward.scorer.sampling))
    if config.eval_limit > 0 and config.max_turns > 1:  # the trained guide in multi-turn episodes
        from gcop_env.trainers.multiturn_grpo import evaluate_episodes
        metrics.update(evaluate_episodes(model, trainer.processing_class, reward.episodes,
                                         load_problems(config, config.eval_split, config.eval_limit),
                                         config.eval_temperature, config.eval_top_p, config.max_completion_length,
                                         config.max_workers))
    elif config.eval_limit > 0:
        metrics.update(evaluate_guide(model, trainer.processing_class, reward.scorer,
                                      load_problems(config, config.eval_split, config.eval_limit),
                                      config.eval_temperature, config.eval_top_p, config.max_completion_length))
    summary = TrainSummary(command="grpo", output_dir=config.output_dir, steps=trainer.state.global_step,
                           examples=len(trainer.train_dataset), train_runtime_s=runtime, metrics=metrics)
    write_json(Path(config.output_dir) / "summary.json",
               {**summary.as_dict(), "log_history": trainer.state.log_history})
    reward.close()
    return summary
