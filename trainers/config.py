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

import argparse
import dataclasses
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from gcop_env.checks import check_bool, check_int, check_number
# Current models (checked 2026-11-29; dates, sources and the retired models in gcop_env/cores/models.py):
# Claude Haiku 4.5 stands in for the paper's retired Claude 3 / 3.5 Haiku cores; Claude Sonnet 5.5
# replaces Sonnet 4.5 as the teacher (Sonnet 4.5 retires on 2026-11-30).
from gcop_env.cores.models import DEFAULT_CORE, DEFAULT_TEACHER
from gcop_env.files import write_text_atomic
from gcop_env.reward import RewardConfig
from gcop_env.strategy import DEFAULT_MAX_STRATEGY_CHARS
from gcop_env.usage import OneLineErrorParser

C = TypeVar("C")



class ConfigError(ValueError):
    """A config value is of the wrong type or out of its range, or a field is unknown."""


def _opt(default: Any, help: str, **metadata: Any) -> Any:  # noqa: A002 - mirrors argparse
    """A field with help text. ``lo``/``hi`` (``lo_open``/``hi_open`` for strict bounds) give its range."""
    if isinstance(default, (dict, list)):
        return field(default_factory=lambda: type(default)(default), metadata={"help": help, **metadata})
    return field(default=default, metadata={"help": help, **metadata})


@dataclass
class CoreCallOptions:
    """Options shared by every command that calls a core over an API."""

    cache: str | None = _opt(None, "response cache: a SQLite path, 'off' to disable, unset for the default "
                                   "($GCOP_CACHE_DIR/responses.sqlite). The cache is what makes re-runs free.")
    max_retries: int = _opt(6, "attempts per API call on transient failures (429, 529, 5xx, timeouts)", lo=1)
    retry_backoff_s: float = _opt(1.0, "first backoff between attempts in seconds (doubles each time, with jitter)",
                                  lo=0)
    timeout_s: float = _opt(120.0, "per-request timeout in seconds", lo=0, lo_open=True)
    preflight: bool = _opt(True, "before spending anything, make one tiny call per model spec (as `gcop check`) "
                                 "and stop on a retired model, a bad key or a refused sampling parameter; "
                                 "--no-preflight skips it")
    max_usd: float | None = _opt(None, "budget: stop paying for core calls (teacher, core, judge, baseline) at this "
                                       "many US dollars this run; cache hits are free. Finished work is saved and "
                                       "the command exits 4; re-run with a larger budget to resume", lo=0)
    max_total_tokens: int | None = _opt(None, "budget: stop paying for core calls at this many input + output "
                                              "tokens this run (exit 4, resumable like --max-usd)", lo=0)


@dataclass
class CurateConfig(CoreCallOptions):
    """``gcop curate``: teacher-guided acceptance sampling of strategies.

    For each problem the teacher (who sees the reference solution) writes ``teacher_draws``
    strategies; the target core runs each ``k`` times; a strategy is accepted iff
    q̂_K = successes / k ≥ ``tau``, and the first accepted draw is kept. When none is, the best
    goes back to the teacher with the core's failing answer for up to ``max_rounds`` refinements.
    ``eta``, ``alpha`` and ``epsilon`` only shape the Hoeffding report (see gcop_env.trainers.curate).
    """

    task: str = _opt("GSM8K", "registered task name (see gcop_env.registered_tasks())")
    data_files: str | None = _opt(None, "local data (file or directory) instead of the Hugging Face hub")
    split: str = _opt("train", "dataset split to curate")
    limit: int | None = _opt(None, "curate only the first N problems of the split", lo=1)
    teacher: str = _opt(DEFAULT_TEACHER, "core spec of the teacher LLM that writes and refines strategies")
    core: str = _opt(DEFAULT_CORE, "core spec of the target core that executes the strategies")
    k: int = _opt(8, "K: core executions per strategy", lo=1)
    tau: float = _opt(0.75, "τ: accept a strategy iff its success rate q̂_K over K executions is ≥ τ", lo=0, hi=1)
    max_rounds: int = _opt(2, "N: refinement rounds after the teacher's draws (0 = no refinement)", lo=0)
    teacher_draws: int = _opt(4, "M: independent teacher strategies per problem before any refinement, each run K "
                                 "times; the share accepted is Â_s, the per-state acceptance rate behind the "
                                 "Hoeffding report (ε = sqrt(ln(1/alpha) / 2M))", lo=1)
    success_threshold: float = _opt(1.0, "a core execution counts as a success when its validator reward is ≥ this",
                                    lo=0, hi=1)
    out: str = _opt("curated.jsonl", "output JSONL; re-running with the same --out resumes")
    eta: float = _opt(0.3, "η: tolerance of the acceptance test. A strategy whose true success rate is below "
                           "τ − η passes with probability at most δ = exp(−2Kη²) (Hoeffding; K=8, η=0.3: 0.24)",
                      lo=0, hi=1, lo_open=True)
    epsilon: float | None = _opt(None, "ε: slack of the per-state acceptance rate Â_s. Unset: the Hoeffding slack "
                                       "sqrt(ln(1/alpha) / 2M) over the M teacher draws", lo=0, hi=1)
    alpha: float = _opt(0.05, "1 − confidence of the lower bound Â_s − ε on each state's acceptance rate",
                        lo=0, hi=1, lo_open=True, hi_open=True)
    workers: int = _opt(4, "problems curated concurrently (each runs its K core calls concurrently too)", lo=1)
    core_temperature: float = _opt(0.7, "sampling temperature of the core (K executions need temperature > 0 to differ)",
                                   lo=0, hi=2)
    core_top_p: float = _opt(1.0, "top-p of the core", lo=0, hi=1, lo_open=True)
    core_max_tokens: int = _opt(1024, "reply budget of the core", lo=1)
    teacher_temperature: float = _opt(0.7, "sampling temperature of the teacher", lo=0, hi=2)
    teacher_max_tokens: int = _opt(1024, "reply budget of the teacher", lo=1)
    max_strategy_chars: int = _opt(DEFAULT_MAX_STRATEGY_CHARS, "length budget of a strategy (structure check)", lo=1)
    feedback_chars: int = _opt(1500, "how much of the core's failing answer the teacher sees when refining", lo=0)
    validator_options: dict = _opt({}, "keyword arguments for the task's validator, as JSON (e.g. {\"sandbox\": \"docker\"})")

    def __post_init__(self) -> None:
        validate_fields(self)
        _check_task(self.task)


@dataclass
class LoraOptions:
    lora: bool = _opt(False, "train a LoRA adapter (peft) instead of all weights; the output is merged")
    lora_r: int = _opt(16, "LoRA rank", lo=1)
    lora_alpha: int = _opt(32, "LoRA alpha", lo=1)
    lora_dropout: float = _opt(0.05, "LoRA dropout", lo=0, hi=1, hi_open=True)
    lora_target_modules: str = _opt("all-linear", "modules to adapt: 'all-linear' or a comma-separated list")


@dataclass
class TrainRunOptions(LoraOptions):
    guide: str = _opt("Qwen/Qwen3-1.7B", "the guide: a transformers causal LM (hub id or local path)")
    output_dir: str = _opt("runs/guide", "where checkpoints, the final model, run_config.json and summary.json go")
    max_steps: int = _opt(-1, "optimizer steps; -1 trains for num_train_epochs", lo=-1)
    num_train_epochs: float = _opt(1.0, "epochs when max_steps is -1", lo=0, lo_open=True)
    per_device_train_batch_size: int = _opt(8, "batch size per device", lo=1)
    gradient_accumulation_steps: int = _opt(1, "gradient accumulation steps", lo=1)
    logging_steps: int = _opt(1, "log every N steps", lo=1)
    save_steps: int = _opt(100, "checkpoint every N steps", lo=1)
    save_total_limit: int = _opt(2, "checkpoints kept", lo=1)
    report_to: str = _opt("none", "where metrics go: none, tensorboard, wandb (comma-separated)")
    seed: int = _opt(42, "random seed", lo=0)
    bf16: bool | None = _opt(None, "bfloat16 compute (autocast); unset: on when a GPU supports it")
    weights_dtype: str = _opt("auto", "dtype of the weights AdamW updates. auto: float32 master weights (with bf16 "
                                      "the forward and backward run under bf16 autocast), except that a LoRA run "
                                      "keeps its frozen base in bfloat16 (the adapters stay float32). bfloat16: "
                                      "half the memory, but an update below bf16's resolution (about 1/256 of a "
                                      "weight) rounds to nothing, which at lr 1e-6 is almost every update",
                              choices=("auto", "float32", "bfloat16"))
    use_cpu: bool | None = _opt(None, "train on the CPU; unset: on when no GPU is visible")
    gradient_checkpointing: bool = _opt(False, "trade compute for memory")
    trainer_args: dict = _opt({}, "extra TRL config fields passed through as they are (JSON or config file)")

@dataclass
class SFTRunConfig(TrainRunOptions):
    """``gcop sft``: supervised fine-tuning of the guide on the accepted (problem, strategy) pairs.

    Chat format: user = the guide's prompt, assistant = ``<think>…</think><strategy>…</strategy>``;
    the loss covers the assistant turn only.
    """

    corpus: str = _opt("curated.jsonl", "JSONL written by gcop curate; only accepted rows are used")
    output_dir: str = _opt("runs/sft", "where checkpoints, the final model, run_config.json and summary.json go")
    learning_rate: float = _opt(1e-5, "learning rate", lo=0, lo_open=True)
    weight_decay: float = _opt(0.0, "weight decay", lo=0)
    num_train_epochs: float = _opt(3.0, "epochs when max_steps is -1", lo=0, lo_open=True)
    max_length: int = _opt(4096, "longest tokenized example; longer ones are truncated", lo=1)
    min_q_hat: float | None = _opt(None, "also drop accepted rows whose q̂ is below this", lo=0, hi=1)

    def __post_init__(self) -> None:
        validate_fields(self)
        _check(bool(self.corpus), "corpus is required")


@dataclass
class GRPORunConfig(TrainRunOptions, CoreCallOptions):
    """``gcop grpo``: GRPO on the guide with the environment's shaped reward.

    Defaults follow the paper: KL coefficient 0.004, learning rate 1e-6, weight decay 0.1, batch
    size 8, 8 generations per prompt, completions up to 2048 tokens. After training, the guide is
    evaluated on the first ``eval_limit`` (default 20) problems of ``eval_split`` with the paper's
    evaluation sampling, temperature 0.6 and top-p 0.95 (``eval_*`` metrics in summary.json).
    """

    task: str = _opt("GSM8K", "registered task name")
    data_files: str | None = _opt(None, "local data (file or directory) instead of the Hugging Face hub")
    split: str = _opt("train", "dataset split to train on")
    limit: int | None = _opt(None, "use only the first N problems", lo=1)
    core: str = _opt(DEFAULT_CORE, "core spec of the black-box core the guide steers")
    judge: str | None = _opt(None, "core spec of the judge J (unset: the core itself; unused when reward_gamma is 0)")
    output_dir: str = _opt("runs/grpo", "where checkpoints, the final model, run_config.json and summary.json go")
    recipe: str = _opt("exectune", "exectune: the structure-aware shaped reward; advisor: advisor-style RL (Asawa et "
                                   "al. 2025), the task reward alone, no structure requirement (the whole output is "
                                   "the advice), β = γ = κ = λ = 0 (defaults are zeroed, other values refused)",
                       choices=("exectune", "advisor"))
    kl_coef: float = _opt(0.004, "KL coefficient β of GRPO (TRL's `beta`)", lo=0)
    learning_rate: float = _opt(1e-6, "learning rate", lo=0, lo_open=True)
    weight_decay: float = _opt(0.1, "weight decay", lo=0)
    num_generations: int = _opt(8, "completions sampled per prompt (the GRPO group)", lo=2)
    max_completion_length: int = _opt(2048, "longest guide output in tokens", lo=1)
    temperature: float = _opt(1.0, "sampling temperature of the guide during training", lo=0, lo_open=True)
    top_p: float = _opt(1.0, "top-p of the guide during training", lo=0, hi=1, lo_open=True)
    eval_temperature: float = _opt(0.6, "sampling temperature of the guide in the final evaluation", lo=0, lo_open=True)
    eval_top_p: float = _opt(0.95, "top-p of the guide in the final evaluation", lo=0, hi=1, lo_open=True)
    eval_split: str = _opt("test", "split of the final evaluation")
    eval_limit: int = _opt(20, "problems of eval_split in the final evaluation after training, one guide sample "
                               "each at eval_temperature / eval_top_p, scored in the env (0 = skip it)", lo=0)
    reward_beta: float = _opt(RewardConfig.beta, "β: structure bonus of the shaped reward", lo=0)
    reward_gamma: float = _opt(RewardConfig.gamma, "γ: judge weight (0 = no judge calls)", lo=0)
    reward_kappa: float = _opt(RewardConfig.kappa, "κ: harm weight on max(0, −ΔR) (0 = no baseline calls)", lo=0)
    reward_lambda: float = _opt(RewardConfig.lam, "λ: cost weight", lo=0)
    cost_unit: str = _opt(RewardConfig.cost_unit, "what the cost term T counts: usd or tokens (thousands)")
    core_temperature: float = _opt(0.0, "sampling temperature of the core", lo=0, hi=2)
    core_top_p: float = _opt(1.0, "top-p of the core", lo=0, hi=1, lo_open=True)
    core_max_tokens: int = _opt(1024, "reply budget of the core", lo=1)
    baseline_samples: int | None = _opt(None, "unguided core draws averaged into the baseline E[r(y_0)] of ΔR, "
                                              "once per problem (unset: 1 for a deterministic core, 4 for a "
                                              "sampled one)", lo=1)
    judge_max_tokens: int = _opt(256, "reply budget of the judge", lo=1)
    max_strategy_chars: int = _opt(DEFAULT_MAX_STRATEGY_CHARS, "length budget of a strategy (structure check)", lo=1)
    max_workers: int = _opt(8, "concurrent core calls while scoring a batch with --reward-mode sync, and in the "
                               "final evaluation", lo=1)
    reward_mode: str = _opt("async", "async: the reward is an `async def` TRL awaits on its event loop, scoring "
                                     "at most max_inflight steps at once, alongside any other async reward "
                                     "function; sync: a plain function scoring max_workers steps at once "
                                     "(for trainers or loops that do not await reward functions). Same rewards",
                            choices=("async", "sync"))
    max_inflight: int = _opt(16, "steps (core call, baseline, judge) scored at once by the async reward, per "
                                 "training process", lo=1)
    use_vllm: bool = _opt(False, "generate with vLLM (TRL's use_vllm; vLLM 0.22-0.32: pip install 'gcop-env[gpu]'); colocate needs a GPU")
    vllm_mode: str = _opt("colocate", "colocate (vLLM inside the training processes) or server (`trl vllm-serve`)",
                          choices=("colocate", "server"))
    vllm_server_base_url: str | None = _opt(None, "URL of `trl vllm-serve` in server mode (default host:port 0.0.0.0:8000)")
    vllm_gpu_memory_utilization: float = _opt(0.3, "GPU memory share of vLLM in colocate mode",
                                              lo=0, hi=1, lo_open=True)
    validator_options: dict = _opt({}, "keyword arguments for the task's validator, as JSON")

    def __post_init__(self) -> None:
        validate_fields(self)
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


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def _check_task(name: str) -> None:
    from gcop_env.tasks import get_task

    try:
        get_task(name)
    except KeyError as exc:
        raise ConfigError(exc.args[0]) from None


def validate_fields(config: Any) -> None:
    """Check every field of a config dataclass: type, finiteness and range (the field's ``lo``/``hi``).

    Raises :class:`ConfigError` naming the field, the value and what is valid.
    """
    hints = typing.get_type_hints(type(config))
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        base, optional = _unwrap_optional(hints[f.name])
        if value is None:
            if optional:
                continue
            raise ConfigError(f"{f.name} must be set (got null)")
        meta = f.metadata
        bounds = dict(lo=meta.get("lo"), hi=meta.get("hi"))
        try:
            if base is bool:
                check_bool(f.name, value)
            elif base is int:
                check_int(f.name, value, **bounds)
            elif base is float:
                check_number(f.name, value, **bounds, lo_open=meta.get("lo_open", False),
                             hi_open=meta.get("hi_open", False))
            elif base is str and not isinstance(value, str):
                raise ValueError(f"{f.name} must be a string, got {value!r} ({type(value).__name__})")
            elif (base is dict or typing.get_origin(base) is dict) and not isinstance(value, dict):
                raise ValueError(f"{f.name} must be a mapping (JSON object), got {value!r}")
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        if f.metadata.get("choices") and value not in f.metadata["choices"]:
            raise ConfigError(f"{f.name} must be one of {list(f.metadata['choices'])}, got {value!r}")
    if getattr(config, "max_steps", None) == 0:
        raise ConfigError("max_steps must be -1 (train for num_train_epochs) or >= 1, got 0")


def _unwrap_optional(hint: Any) -> tuple[Any, bool]:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return (args[0] if len(args) == 1 else hint), len(args) < len(typing.get_args(hint))
    return hint, False


# -- files and flags ---------------------------------------------------------------------------
def read_config_file(path: str | Path) -> dict[str, Any]:
    """A YAML (``.yaml``/``.yml``) or JSON config file as a dict of field names to values."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist" if not path.exists() else f"config file {path} is not a file")
    try:
        text = path.read_text(encoding="utf-8")
        if path.suffix.lower() in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text) or {}
        else:
            data = json.loads(text)
    except Exception as exc:  # noqa: BLE001 - YAML, JSON and decoding errors all mean the same to the user
        detail = " ".join(str(exc).split())
        raise ConfigError(f"config file {path} cannot be read ({type(exc).__name__}: {detail})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of field names to values")
    return {str(k).replace("-", "_"): v for k, v in data.items()}


def _parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _json_object(text: str) -> dict:
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not valid JSON ({exc}): {text!r}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object like '{{\"key\": 1}}', got {text!r}")
    return value


def _flag_type(hint: Any) -> tuple[Any, bool]:
    """(argparse type, is_bool) for a field's type hint (``X | None`` unwrapped)."""
    base = hint
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        base = next(a for a in typing.get_args(hint) if a is not type(None))
    if base is bool:
        return _parse_bool, True
    if base is dict or typing.get_origin(base) is dict:
        return _json_object, False
    return base, False


def build_parser(cls: type, prog: str, description: str | None = None) -> argparse.ArgumentParser:
    """An argparse parser with ``--config FILE`` and one ``--field-name`` flag per field."""
    parser = OneLineErrorParser(prog=prog, description=description or (cls.__doc__ or "").split("\n\n")[0],
                                     argument_default=argparse.SUPPRESS)
    parser.add_argument("--config", help="YAML or JSON file of field values; flags given here override it")
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        kind, is_bool = _flag_type(hints[f.name])
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        help_text = f"{f.metadata.get('help', '')} (default: {default!r})"
        flag = "--" + f.name.replace("_", "-")
        if is_bool:
            # `--lora` alone means true; `--lora false` is accepted too
            parser.add_argument(flag, dest=f.name, type=kind, nargs="?", const=True, help=help_text)
            parser.add_argument("--no-" + f.name.replace("_", "-"), dest=f.name, action="store_const", const=False,
                                help=argparse.SUPPRESS)
        else:
            parser.add_argument(flag, dest=f.name, type=kind, choices=f.metadata.get("choices"), help=help_text)
    return parser


def parse_config(cls: type[C], argv: list[str] | None, prog: str) -> C:
    """Defaults, then ``--config FILE``, then flags: the resolved config.

    A bad flag, config file or value exits with status 2 and a one-line message.
    """
    parser = build_parser(cls, prog)
    ns = vars(parser.parse_args(argv))
    values: dict[str, Any] = {}
    config_file = ns.pop("config", None)
    try:
        if config_file:
            values.update(read_config_file(config_file))
        values.update(ns)
        return config_from_dict(cls, values)
    except ConfigError as exc:
        parser.error(str(exc))


def config_from_dict(cls: type[C], values: dict[str, Any]) -> C:
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        import difflib

        hints = [f"{u!r}" + (f" (did you mean {m[0]!r}?)" if (m := difflib.get_close_matches(u, names, 1)) else "")
                 for u in unknown]
        raise ConfigError(f"unknown {cls.__name__} field(s): {', '.join(hints)}; valid: {sorted(names)}")
    return cls(**values)


def write_config(config: Any, path: str | Path) -> Path:
    """Write the resolved config as JSON (it can be passed back with ``--config``)."""
    return write_text_atomic(path, json.dumps(dataclasses.asdict(config), indent=2, sort_keys=True) + "\n")
