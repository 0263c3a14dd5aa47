"""One config dataclass per command: the fields are the documentation.

Every field has a default that works and help text; the command-line parser is built from the
dataclass, so ``gcop curate --help`` lists exactly these fields. Values are resolved in order:
the dataclass default, then a YAML/JSON file given with ``--config``, then flags on the command
line. Each run writes the resolved config next to its outputs (:func:`write_config`).

Every field is checked before any work starts (:func:`validate_fields`): its type, that a number
is finite, and its range (``lo``/``hi`` in the field's metadata). A bad value is a
:class:`ConfigError` naming the field and the valid range; the commands print it as a one-line
usage error with exit status 2.
"""

from __future__ import annotations

from dataclasses import dataclass

# Current models (checked 2026-11-29; dates, sources and the retired models in gcop_env/cores/models.py):
# Claude Haiku 4.5 stands in for the paper's retired Claude 3 / 3.5 Haiku cores; Claude Sonnet 5.5
# replaces Sonnet 4.5 as the teacher (Sonnet 4.5 retires on 2026-11-30).
from gcop_env.cores.models import DEFAULT_CORE, DEFAULT_TEACHER
from gcop_env.cores.options import CoreCallOptions
from gcop_env.step.reward import RewardConfig
from gcop_env.step.strategy import DEFAULT_MAX_STRATEGY_CHARS
from gcop_env.utils.fields import ConfigError, option, validate_fields, write_config  # noqa: F401 - write_config: the trainers write their resolved config


@dataclass
class CurateConfig(CoreCallOptions):
    """``gcop curate``: teacher-guided acceptance sampling of strategies.

    For each problem the teacher (who sees the reference solution) writes ``teacher_draws``
    strategies; the target core runs each ``k`` times; a strategy is accepted iff
    q̂_K = successes / k ≥ ``tau``, and the first accepted draw is kept. When none is, the best
    goes back to the teacher with the core's failing answer for up to ``max_rounds`` refinements.
    ``eta``, ``alpha`` and ``epsilon`` only shape the Hoeffding report (see gcop_env.trainers.curate).
    """

    task: str = option("GSM8K", "registered task name (see gcop_env.registered_tasks())")
    data_files: str | None = option(None, "local data (file or directory) instead of the Hugging Face hub")
    split: str = option("train", "dataset split to curate")
    limit: int | None = option(None, "curate only the first N problems of the split", lo=1)
    teacher: str = option(DEFAULT_TEACHER, "core spec of the teacher LLM that writes and refines strategies")
    core: str = option(DEFAULT_CORE, "core spec of the target core that executes the strategies")
    k: int = option(8, "K: core executions per strategy", lo=1)
    tau: float = option(0.75, "τ: accept a strategy iff its success rate q̂_K over K executions is ≥ τ", lo=0, hi=1)
    max_rounds: int = option(2, "N: refinement rounds after the teacher's draws (0 = no refinement)", lo=0)
    teacher_draws: int = option(4, "M: independent teacher strategies per problem before any refinement, each run K "
                                 "times; the share accepted is Â_s, the per-state acceptance rate behind the "
                                 "Hoeffding report (ε = sqrt(ln(1/alpha) / 2M))", lo=1)
    success_threshold: float = option(1.0, "a core execution counts as a success when its validator reward is ≥ this",
                                    lo=0, hi=1)
    out: str = option("curated.jsonl", "output JSONL; re-running with the same --out resumes")
    eta: float = option(0.3, "η: tolerance of the acceptance test. A strategy whose true success rate is below "
                           "τ − η passes with probability at most δ = exp(−2Kη²) (Hoeffding; K=8, η=0.3: 0.24)",
                      lo=0, hi=1, lo_open=True)
    epsilon: float | None = option(None, "ε: slack of the per-state acceptance rate Â_s. Unset: the Hoeffding slack "
                                       "sqrt(ln(1/alpha) / 2M) over the M teacher draws", lo=0, hi=1)
    alpha: float = option(0.05, "1 − confidence of the lower bound Â_s − ε on each state's acceptance rate",
                        lo=0, hi=1, lo_open=True, hi_open=True)
    workers: int = option(4, "problems curated concurrently, the next started as each finishes (each runs its M "
                             "teacher draws, and each draw's K core calls, concurrently too)", lo=1)
    core_temperature: float = option(0.7, "sampling temperature of the core (K executions need temperature > 0 to differ)",
                                   lo=0, hi=2)
    core_top_p: float = option(1.0, "top-p of the core", lo=0, hi=1, lo_open=True)
    core_max_tokens: int = option(1024, "reply budget of the core", lo=1)
    teacher_temperature: float = option(0.7, "sampling temperature of the teacher", lo=0, hi=2)
    teacher_max_tokens: int = option(1024, "reply budget of the teacher", lo=1)
    max_strategy_chars: int = option(DEFAULT_MAX_STRATEGY_CHARS, "length budget of a strategy (structure check)", lo=1)
    feedback_chars: int = option(1500, "how much of the core's failing answer the teacher sees when refining", lo=0)
    validator_options: dict = option({}, "keyword arguments for the task's validator, as JSON (e.g. {\"sandbox\": \"docker\"})")

    def __post_init__(self) -> None:
        validate_fields(self)
        _check_task(self.task)


@dataclass
class LoraOptions:
    lora: bool = option(False, "train a LoRA adapter (peft) instead of all weights; the output is merged")
    lora_r: int = option(16, "LoRA rank", lo=1)
    lora_alpha: int = option(32, "LoRA alpha", lo=1)
    lora_dropout: float = option(0.05, "LoRA dropout", lo=0, hi=1, hi_open=True)
    lora_target_modules: str = option("all-linear", "modules to adapt: 'all-linear' or a comma-separated list")


@dataclass
class TrainRunOptions(LoraOptions):
    guide: str = option("Qwen/Qwen3-1.7B", "the guide: a transformers causal LM (hub id or local path)")
    output_dir: str = option("runs/guide", "where checkpoints, the final model, run_config.json and summary.json go")
    max_steps: int = option(-1, "optimizer steps; -1 trains for num_train_epochs", lo=-1)
    num_train_epochs: float = option(1.0, "epochs when max_steps is -1", lo=0, lo_open=True)
    per_device_train_batch_size: int = option(8, "batch size per device", lo=1)
    gradient_accumulation_steps: int = option(1, "gradient accumulation steps", lo=1)
    logging_steps: int = option(1, "log every N steps", lo=1)
    save_steps: int = option(100, "checkpoint every N steps", lo=1)
    save_total_limit: int = option(2, "checkpoints kept", lo=1)
    report_to: str = option("none", "where metrics go: none, tensorboard, wandb (comma-separated)")
    seed: int = option(42, "random seed", lo=0)
    bf16: bool | None = option(None, "bfloat16 compute (autocast); unset: on when a GPU supports it")
    weights_dtype: str = option("auto", "dtype of the weights AdamW updates. auto: float32 master weights (with bf16 "
                                      "the forward and backward run under bf16 autocast), except that a LoRA run "
                                      "keeps its frozen base in bfloat16 (the adapters stay float32). bfloat16: "
                                      "half the memory, but an update below bf16's resolution (about 1/256 of a "
                                      "weight) rounds to nothing, which at lr 1e-6 is almost every update",
                              choices=("auto", "float32", "bfloat16"))
    use_cpu: bool | None = option(None, "train on the CPU; unset: on when no GPU is visible")
    gradient_checkpointing: bool = option(False, "trade compute for memory")
    trainer_args: dict = option({}, "extra TRL config fields passed through as they are (JSON or config file)")

@dataclass
class SFTRunConfig(TrainRunOptions):
    """``gcop sft``: supervised fine-tuning of the guide on the accepted (problem, strategy) pairs.

    Chat format: user = the guide's prompt, assistant = ``<think>…</think><strategy>…</strategy>``;
    the loss covers the assistant turn only.
    """

    corpus: str = option("curated.jsonl", "JSONL written by gcop curate; only accepted rows are used")
    output_dir: str = option("runs/sft", "where checkpoints, the final model, run_config.json and summary.json go")
    learning_rate: float = option(1e-5, "learning rate", lo=0, lo_open=True)
    weight_decay: float = option(0.0, "weight decay", lo=0)
    num_train_epochs: float = option(3.0, "epochs when max_steps is -1", lo=0, lo_open=True)
    max_length: int = option(4096, "longest tokenized example; longer ones are truncated", lo=1)
    min_q_hat: float | None = option(None, "also drop accepted rows whose q̂ is below this", lo=0, hi=1)
    revision_turns: bool = option(True, "also train revision turns: each row accepted after refinement becomes a "
                                        "multi-turn example (failed replies and the env's feedback as context, the "
                                        "accepted strategy as the target)", group="multi-turn")
    max_turns: int = option(3, "the N of the revision observations' 'attempt t of N' (the env's max_turns); longer "
                               "refinement chains make no revision example", lo=2, group="multi-turn")

    def __post_init__(self) -> None:
        validate_fields(self)
        _check_max_steps(self.max_steps)
        _check_output_dir(self.output_dir)
        _check(bool(self.corpus), "corpus is required")


@dataclass
class GRPORunConfig(TrainRunOptions, CoreCallOptions):
    """``gcop grpo``: GRPO on the guide with the environment's shaped reward.

    Defaults follow the paper: KL coefficient 0.004, learning rate 1e-6, weight decay 0.1, batch
    size 8, 8 generations per prompt, completions up to 2048 tokens. After training, the guide is
    evaluated on the first ``eval_limit`` (default 20) problems of ``eval_split`` with the paper's
    evaluation sampling, temperature 0.6 and top-p 0.95 (``eval_*`` metrics in summary.json).
    """

    task: str = option("GSM8K", "registered task name")
    data_files: str | None = option(None, "local data (file or directory) instead of the Hugging Face hub")
    split: str = option("train", "dataset split to train on")
    limit: int | None = option(None, "use only the first N problems", lo=1)
    core: str = option(DEFAULT_CORE, "core spec of the black-box core the guide steers")
    judge: str | None = option(None, "core spec of the judge J (unset: the core itself; unused when reward_gamma is 0)")
    output_dir: str = option("runs/grpo", "where checkpoints, the final model, run_config.json and summary.json go")
    recipe: str = option("exectune", "exectune: the structure-aware shaped reward; advisor: advisor-style RL (Asawa et "
                                   "al. 2025), the task reward alone, no structure requirement (the whole output is "
                                   "the advice), β = γ = κ = λ = 0 (defaults are zeroed, other values refused)",
                       choices=("exectune", "advisor"))
    kl_coef: float = option(0.004, "KL coefficient β of GRPO (TRL's `beta`)", lo=0)
    learning_rate: float = option(1e-6, "learning rate", lo=0, lo_open=True)
    weight_decay: float = option(0.1, "weight decay", lo=0)
    num_generations: int = option(8, "completions sampled per prompt (the GRPO group)", lo=2)
    max_completion_length: int = option(2048, "longest guide output in tokens", lo=1)
    temperature: float = option(1.0, "sampling temperature of the guide during training", lo=0, lo_open=True)
    top_p: float = option(1.0, "top-p of the guide during training", lo=0, hi=1, lo_open=True)
    eval_temperature: float = option(0.6, "sampling temperature of the guide in the final evaluation", lo=0, lo_open=True)
    eval_top_p: float = option(0.95, "top-p of the guide in the final evaluation", lo=0, hi=1, lo_open=True)
    eval_split: str = option("test", "split of the final evaluation")
    eval_limit: int = option(20, "problems of eval_split in the final evaluation after training, one guide sample "
                               "each at eval_temperature / eval_top_p, scored in the env (0 = skip it)", lo=0)
    reward_beta: float = option(RewardConfig.beta, "β: structure bonus of the shaped reward", lo=0)
    reward_gamma: float = option(RewardConfig.gamma, "γ: judge weight (0 = no judge calls)", lo=0)
    reward_kappa: float = option(RewardConfig.kappa, "κ: harm weight on max(0, −ΔR) (0 = no baseline calls)", lo=0)
    reward_lambda: float = option(RewardConfig.lam, "λ: cost weight", lo=0)
    cost_unit: str = option(RewardConfig.cost_unit, "what the cost term T counts: usd or tokens (thousands)")
    core_temperature: float = option(0.0, "sampling temperature of the core", lo=0, hi=2)
    core_top_p: float = option(1.0, "top-p of the core", lo=0, hi=1, lo_open=True)
    core_max_tokens: int = option(1024, "reply budget of the core", lo=1)
    baseline_samples: int | None = option(None, "unguided core draws averaged into the baseline E[r(y_0)] of ΔR, "
                                              "once per problem (unset: 1 for a deterministic core, 4 for a "
                                              "sampled one)", lo=1)
    judge_max_tokens: int = option(256, "reply budget of the judge", lo=1)
    max_strategy_chars: int = option(DEFAULT_MAX_STRATEGY_CHARS, "length budget of a strategy (structure check)", lo=1)
    max_workers: int = option(8, "concurrent core calls while scoring a batch with --reward-mode sync, and in the "
                               "final evaluation", lo=1)
    reward_mode: str = option("async", "async: the reward is an `async def` TRL awaits on its event loop, scoring "
                                     "at most max_inflight steps at once, alongside any other async reward "
                                     "function; sync: a plain function scoring max_workers steps at once "
                                     "(for trainers or loops that do not await reward functions). Same rewards",
                            choices=("async", "sync"))
    max_inflight: int = option(16, "steps (core call, baseline, judge) scored at once by the async reward, per "
                                 "training process", lo=1)
    use_vllm: bool = option(False, "generate with vLLM (TRL's use_vllm; vLLM 0.22-0.32: pip install 'gcop-env[gpu]'); colocate needs a GPU")
    vllm_mode: str = option("colocate", "colocate (vLLM inside the training processes) or server (`trl vllm-serve`)",
                          choices=("colocate", "server"))
    vllm_server_base_url: str | None = option(None, "URL of `trl vllm-serve` in server mode (default host:port 0.0.0.0:8000)")
    vllm_gpu_memory_utilization: float = option(0.3, "GPU memory share of vLLM in colocate mode",
                                              lo=0, hi=1, lo_open=True)
    validator_options: dict = option({}, "keyword arguments for the task's validator, as JSON")
    max_turns: int = option(1, "guide turns per episode: after a failed turn the guide sees the core's answer and "
                               "the validator's feedback and revises its strategy (1 = single-turn GRPO)", lo=1,
                            group="multi-turn")
    credit: str = option("improvement", "how each turn's tokens are credited: improvement (u_t − u_{t−1} − c_t), "
                                        "final (the episode's value for every turn) or turn (s_t); see "
                                        "gcop_env.step.credit", choices=("improvement", "final", "turn"),
                         group="multi-turn")
    core_history: str = option("fresh", "fresh: the core answers each turn anew; previous: it also sees its previous "
                                        "attempt and the feedback", choices=("fresh", "previous"), group="multi-turn")

    def __post_init__(self) -> None:
        validate_fields(self)
        _check_max_steps(self.max_steps)
        _check_output_dir(self.output_dir)
        _check_task(self.task)  # num_generations >= 2, vllm_mode, baseline_samples: the fields' lo= / choices=
        if self.recipe == "advisor":
            # The Advisor reward is R alone; a weight set on purpose would be silently dropped, so refuse it.
            for name, default in (("reward_beta", RewardConfig.beta), ("reward_gamma", RewardConfig.gamma),
                                  ("reward_kappa", RewardConfig.kappa), ("reward_lambda", RewardConfig.lam)):
                value = getattr(self, name)
                _check(value in (0, default), f"--recipe advisor trains on the task reward alone ({name} = 0); "
                                              f"drop --{name.replace('_', '-')} {value}")
                setattr(self, name, 0.0)
        RewardConfig(beta=self.reward_beta, gamma=self.reward_gamma, kappa=self.reward_kappa,
                     lam=self.reward_lambda, cost_unit=self.cost_unit)

    def reward_config(self) -> RewardConfig:
        return RewardConfig(beta=self.reward_beta, gamma=self.reward_gamma, kappa=self.reward_kappa,
                            lam=self.reward_lambda, cost_unit=self.cost_unit)


def _check_output_dir(output_dir: str) -> None:
    # "" is the current directory to every path function: a run would write its checkpoints there
    _check(bool(output_dir.strip()), "output_dir is empty; give a directory (e.g. --output-dir runs/guide)")


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def _check_max_steps(max_steps: int) -> None:
    _check(max_steps != 0, "max_steps must be -1 (train for num_train_epochs) or >= 1, got 0")


def _check_task(name: str) -> None:
    from gcop_env.envs.tasks import get_task

    try:
        get_task(name)
    except KeyError as exc:
        raise ConfigError(exc.args[0]) from None
