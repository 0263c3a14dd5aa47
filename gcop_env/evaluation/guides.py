"""Guide models chosen by a spec string, behind one batch interface: guide prompts in, outputs out.

Spec forms (like a core's, see :func:`gcop_env.make_core`):

* ``hf:PATH`` / ``hf:PATH?gguf_file=NAME``  local transformers weights (e.g. a ``gcop sft`` or
  ``gcop grpo`` output dir); batched generation; the chat template when the tokenizer has one,
  else a completion-style prompt (base models).
* ``openai:MODEL@http://HOST:PORT/v1`` (or ``openai:MODEL`` with ``OPENAI_BASE_URL``)  any
  OpenAI-compatible server (``vllm serve``, llama.cpp); the core backend with its retries and
  response cache, so a re-run costs 0 calls.
* ``vllm:PATH`` / ``vllm:PATH?KEY=VALUE&...``  an offline vLLM engine (needs the ``gpu`` extra:
  ``pip install 'gcop-env[gpu]'``), with engine options (:data:`VLLM_ENGINE_OPTIONS`, e.g.
  ``?gpu_memory_utilization=0.5&max_model_len=4096``) checked before anything loads. The engine is
  built once, at the first generation; if vLLM cannot build it, that is one
  :class:`GuideEngineError` with vLLM's reason and the option to change, never an error per row.

Every guide answers from the on-disk response cache first, so resuming or re-running an
evaluation regenerates nothing. A failed generation is a :class:`~gcop_env.cores.CoreError`
(an infrastructure error), never an empty strategy.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import re
import sys
import threading
import time
from abc import ABC, abstractmethod
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Sequence
from urllib.parse import parse_qsl

from gcop_env.cores.cache import ResponseCache, request_key
from gcop_env.cores import make_core, parse_core_spec
from gcop_env.cores.base import CoreError, CoreRequest, CoreResponse, FatalCoreError, Message, SamplingParams
from gcop_env.cores.hf_core import HFCore, _SampleWithGenerator, render_completion_prompt
from gcop_env.cores.retry import RetryPolicy
from gcop_env.step.prompts import PROMPT_VERSION, guide_prompt
from gcop_env.utils.versions import SUPPORTED_VLLM, check_vllm_version, vllm_version  # noqa: F401 (re-exported)

log = logging.getLogger(__name__)

GUIDE_SPEC_FORMS = ("hf:PATH or hf:PATH?gguf_file=NAME, openai:MODEL or openai:MODEL@http://HOST:PORT/v1, "
                    "vllm:PATH or vllm:PATH?KEY=VALUE&...")
LOCAL_BACKENDS = frozenset({"hf", "vllm"})
# The paper samples the guide at temperature 0.6, top-p 0.95 in evaluation.
DEFAULT_GUIDE_SAMPLING = SamplingParams(temperature=0.6, top_p=0.95, max_tokens=2048)
# The guide's output format ends with the strategy block: a base model that goes on writing after
# it would be malformed only because it does not know when to stop.
DEFAULT_GUIDE_STOP = "</strategy>"


# -- vLLM: engine options and the supported versions ---------------------------------------------

_BYTE_UNITS = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12,
               "ki": 2**10, "mi": 2**20, "gi": 2**30, "ti": 2**40}
_DTYPES = ("auto", "float32", "float16", "bfloat16", "half", "float")


def _to_bool(text: str) -> bool:
    value = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}.get(text.strip().lower())
    if value is None:
        raise ValueError("true or false")
    return value


def _to_int(text: str, lo: int) -> int:
    if not re.fullmatch(r"[+-]?\d+", text.strip()):
        raise ValueError(f"an integer >= {lo}")
    value = int(text)
    if value < lo:
        raise ValueError(f"an integer >= {lo}")
    return value


def _to_fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 < value <= 1:  # NaN fails too
        raise ValueError("a number in (0, 1]")
    return value


def _to_bytes(text: str) -> int:
    match = re.fullmatch(r"\s*(\d+)\s*([kmgt]i?)?b?\s*", text.lower())
    if not match or int(match.group(1)) * _BYTE_UNITS[match.group(2) or ""] < 1:
        raise ValueError("a size in bytes >= 1, e.g. 268435456, 256MiB or 1G")
    return int(match.group(1)) * _BYTE_UNITS[match.group(2) or ""]


def _to_dtype(text: str) -> str:
    if text not in _DTYPES:
        raise ValueError(f"one of {', '.join(_DTYPES)}")
    return text


#: ``vllm:PATH?KEY=VALUE&...``: the options, each vLLM's ``LLM(...)`` argument of the same name, with
#: how its value is read and checked. ``dtype`` and ``max_model_len`` can change the outputs and are part
#: of the response cache's key; the others size memory or parallelism only.
VLLM_ENGINE_OPTIONS: dict[str, tuple[Callable[[str], Any], str]] = {
    "gpu_memory_utilization": (_to_fraction, "share of GPU memory vLLM takes for weights and KV cache "
                                             "(on vLLM's CPU backend: of RAM; default 0.9 / 0.92)"),
    "kv_cache_memory_bytes": (_to_bytes, "KV cache size in bytes (256MiB, 1G ...); replaces the sizing by "
                                         "gpu_memory_utilization (on CPU, VLLM_CPU_KVCACHE_SPACE=GiB overrides it)"),
    "max_model_len": (lambda t: _to_int(t, 1), "longest prompt + output in tokens (default: the model's)"),
    "dtype": (_to_dtype, "weights and activations: auto (vLLM: bfloat16 for float32 weights), float32, "
                         "bfloat16, float16"),
    "tensor_parallel_size": (lambda t: _to_int(t, 1), "GPUs the model is split over"),
    "max_num_seqs": (lambda t: _to_int(t, 1), "sequences generated at once"),
    "enforce_eager": (_to_bool, "no CUDA graphs / torch.compile: a quicker start, slower generation"),
    "enable_prefix_caching": (_to_bool, "reuse the KV cache of shared prompt prefixes"),
}
VLLM_OUTPUT_OPTIONS = ("dtype", "max_model_len")  # the options that can change what is generated


def parse_vllm_options(query: str, spec: str = "") -> dict[str, Any]:
    """``KEY=VALUE&...`` of a ``vllm:`` spec as typed engine options; a ValueError (one line) names a bad key or value."""
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=True)
    except ValueError:
        raise ValueError(f"invalid options {query!r} in guide spec {spec!r}; expected ?KEY=VALUE&...") from None
    options: dict[str, Any] = {}
    for key, text in pairs:
        if key not in VLLM_ENGINE_OPTIONS:
            raise ValueError(f"unknown option {key!r} in guide spec {spec!r}; vllm: accepts "
                             f"{', '.join(sorted(VLLM_ENGINE_OPTIONS))}")
        if key in options:
            raise ValueError(f"option {key!r} given twice in guide spec {spec!r}")
        convert, _ = VLLM_ENGINE_OPTIONS[key]
        try:
            options[key] = convert(text)
        except ValueError as exc:
            raise ValueError(f"option {key}={text!r} in guide spec {spec!r} must be {exc}") from None
    return options


def parse_guide_spec(spec: str) -> tuple[str, str, dict[str, str]]:
    """Split a guide spec into (backend, model, options). Raises ValueError listing the valid forms."""
    if not isinstance(spec, str) or ":" not in spec:
        raise ValueError(f"invalid guide spec {spec!r}; expected one of: {GUIDE_SPEC_FORMS}")
    backend, rest = spec.split(":", 1)
    backend = backend.strip().lower()
    if backend == "vllm":
        path, _, query = rest.partition("?")
        if not path.strip():
            raise ValueError(f"invalid guide spec {spec!r}; expected vllm:PATH or vllm:PATH?KEY=VALUE&...")
        return "vllm", path.strip(), parse_vllm_options(query, spec) if query else {}
    if backend not in ("hf", "openai"):
        raise ValueError(f"invalid guide spec {spec!r}; expected one of: {GUIDE_SPEC_FORMS}")
    try:
        return parse_core_spec(spec)
    except ValueError as exc:
        raise ValueError(str(exc).replace("core spec", "guide spec")) from None


def guide_identity(spec: str) -> str:
    """The guide spec as far as it decides the outputs: a ``vllm:`` spec keeps only the engine options that
    can change them (:data:`VLLM_OUTPUT_OPTIONS`), so resuming a run with another memory setting is the
    same condition."""
    backend, model, options = parse_guide_spec(spec)
    if backend != "vllm":
        return spec
    kept = "&".join(f"{k}={options[k]}" for k in VLLM_OUTPUT_OPTIONS if k in options)
    return f"vllm:{model}?{kept}" if kept else f"vllm:{model}"


def guide_request(question: str, sampling: SamplingParams, sample_index: int) -> CoreRequest:
    """The guide's request for one problem and one sample (the env's observation as the user turn)."""
    return CoreRequest(messages=(Message("user", guide_prompt(question)),), sampling=sampling,
                       sample_index=sample_index)


class Guide(ABC):
    """Writes guide outputs for a batch of requests; one result per request, in order."""

    backend: str = ""
    model: str = ""

    @property
    def spec(self) -> str:
        return f"{self.backend}:{self.model}"

    @property
    def local(self) -> bool:
        """Runs on this machine (priced at $0 unless a price is given)."""
        return self.backend in LOCAL_BACKENDS

    #: each request is its own call (an API): the run loop asks per job through :meth:`generate_one`;
    #: else the guide generates batches on this machine through :meth:`generate`
    per_request: bool = False

    @abstractmethod
    def generate(self, requests: Sequence[CoreRequest]) -> list[CoreResponse | CoreError]:
        """Outputs (or the infrastructure error) for each request."""

    def load(self) -> None:
        """Load what generating needs (a local model) now, before the first batch; a guide that cannot
        load fails here, once, instead of failing every batch as infrastructure. API guides: nothing."""

    def generate_one(self, request: CoreRequest) -> CoreResponse | CoreError:
        """The output (or the infrastructure error) for one request."""
        return self.generate([request])[0]

    @property
    def live_calls(self) -> int:
        """Generations actually run (cache hits excluded)."""
        return 0

    @property
    def cached_calls(self) -> int:
        return 0

    def close(self) -> None:
        """Release the model or the client."""


class APIGuide(Guide):
    """A guide behind an OpenAI-compatible server: the core machinery (retries, cache) does the calls."""

    per_request = True

    def __init__(self, spec: str, *, cache: Any = None, retry: RetryPolicy | None = None,
                 timeout_s: float = 120.0, workers: int = 8):
        self.core = make_core(spec, cache=cache, retry=retry, timeout_s=timeout_s)
        self.backend, self.model = self.core.backend, self.core.model
        self._spec = self.core.spec
        self.workers = max(1, workers)

    @property
    def spec(self) -> str:
        return self._spec

    def generate_one(self, request: CoreRequest) -> CoreResponse | CoreError:
        try:
            return self.core.complete(request)
        except CoreError as exc:
            if is_fatal(exc):
                raise  # a bad key or an unknown model: every request would fail, stop the run
            return exc

    def generate(self, requests: Sequence[CoreRequest]) -> list[CoreResponse | CoreError]:
        if len(requests) <= 1 or self.workers == 1:
            return [self.generate_one(r) for r in requests]
        with ThreadPoolExecutor(max_workers=min(self.workers, len(requests))) as pool:
            return list(pool.map(self.generate_one, requests))

    @property
    def live_calls(self) -> int:
        return self.core.calls

    @property
    def cached_calls(self) -> int:
        return self.core.cache_hits

    def close(self) -> None:
        self.core.close()


class LocalBatchGuide(Guide):
    """A guide that generates in batches on this machine, answering from the response cache first.

    Subclasses implement :meth:`_generate_batch`. ``prefill`` is text the reply is forced to start
    with (an assistant prefill: appended to the prompt, and part of the recorded output), e.g.
    ``"<think>"`` to put a base model on the output format. ``stop`` ends a reply after that
    string (kept in the output).
    """

    def __init__(self, *, cache: ResponseCache | None, batch_size: int = 8, prefill: str = "",
                 stop: str | None = DEFAULT_GUIDE_STOP):
        self.cache = cache
        self.batch_size = max(1, batch_size)
        self.prefill = prefill
        self.stop = stop or None
        self._live = 0
        self._cached = 0
        self._fingerprint: str | None = None

    def _key(self, request: CoreRequest) -> str:
        # Prefill and stop change the output, so they are part of the key; so do the weights
        # (a guide retrained into the same dir must not be answered with the old one's outputs).
        if self._fingerprint is None:
            self._fingerprint = weights_fingerprint(self.model.split("?", 1)[0])
        model = f"{self.model}|guide|weights={self._fingerprint}|prefill={self.prefill!r}|stop={self.stop!r}"
        return request_key(self.backend, model, request, PROMPT_VERSION)

    def _finish(self, generated: str) -> tuple[str, str]:
        """(recorded output, stop reason) from the generated continuation."""
        text = self.prefill + generated
        if self.stop and self.stop in generated:
            cut = text.index(self.stop, len(self.prefill)) + len(self.stop)
            return text[:cut], "stop"
        return text, "length_or_eos"

    @abstractmethod
    def _generate_batch(self, requests: Sequence[CoreRequest]) -> list[CoreResponse]:
        """Generate for requests sharing one sampling configuration (no cache)."""

    def generate(self, requests: Sequence[CoreRequest]) -> list[CoreResponse | CoreError]:
        results: list[CoreResponse | CoreError | None] = [None] * len(requests)
        keys = [self._key(r) if self.cache is not None else None for r in requests]
        missing: list[int] = []
        for i, key in enumerate(keys):
            hit = self.cache.get(key) if key is not None else None
            if hit is not None:
                results[i] = dataclasses.replace(hit, cached=True)
                self._cached += 1
            else:
                missing.append(i)
        by_sampling: dict[SamplingParams, list[int]] = {}
        for i in missing:
            by_sampling.setdefault(requests[i].sampling, []).append(i)
        for group in by_sampling.values():
            for start in range(0, len(group), self.batch_size):
                chunk = group[start:start + self.batch_size]
                try:
                    responses = self._generate_batch([requests[i] for i in chunk])
                except CoreError as exc:
                    if is_fatal(exc):
                        raise  # e.g. an engine that cannot be built: every chunk would fail the same way
                    responses = [exc] * len(chunk)
                except Exception as exc:  # noqa: BLE001 - a crashed generation is infrastructure, not a strategy
                    error = CoreError(f"guide {self.spec} failed to generate: {type(exc).__name__}: {exc}")
                    responses = [error] * len(chunk)
                for i, response in zip(chunk, responses):
                    results[i] = response
                    if isinstance(response, CoreResponse):
                        self._live += 1
                        if keys[i] is not None:
                            self.cache.put(keys[i], response)
        return results  # type: ignore[return-value]

    @property
    def live_calls(self) -> int:
        return self._live

    @property
    def cached_calls(self) -> int:
        return self._cached

    def _batch_seed(self, requests: Sequence[CoreRequest]) -> int:
        """A seed fixed by the batch's requests (prompts, sampling, sample indices), so the same batch
        samples the same outputs. Not by the weights' fingerprint, which holds file times: a fresh
        copy of the same weights must sample the same strategies."""
        keys = "".join(request_key(self.backend, "guide-seed", r, PROMPT_VERSION) for r in requests)
        return int(hashlib.sha256(keys.encode()).hexdigest()[:8], 16)


class HFGuide(LocalBatchGuide):
    """``hf:PATH``: transformers weights, left-padded batched generation (loading as the ``hf:`` core)."""

    backend = "hf"

    def __init__(self, path: str, *, gguf_file: str | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        self._loader = HFCore(path, gguf_file=gguf_file)  # its loading: GGUF dequantisation, device
        self.model = self._loader.model

    def load(self) -> None:
        self._loader.load()

    def prompt_text(self, request: CoreRequest) -> str:
        """The prompt as text: the chat template if the tokenizer has one, else a completion prompt."""
        tok = self._loader._tokenizer
        if getattr(tok, "chat_template", None):
            messages = ([{"role": "system", "content": request.system}] if request.system else [])
            messages += [{"role": m.role, "content": m.content} for m in request.messages]
            text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        else:
            text = render_completion_prompt(request)
        return text + self.prefill

    def _generate_batch(self, requests: Sequence[CoreRequest]) -> list[CoreResponse]:
        import torch

        with self._loader._lock:
            self._loader._load()
            model, tok = self._loader._model, self._loader._tokenizer
            chat = bool(getattr(tok, "chat_template", None))
            start = time.perf_counter()
            rows = [tok(self.prompt_text(r), add_special_tokens=not chat).input_ids for r in requests]
            pad_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
            width = max(len(r) for r in rows)
            ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
            mask = torch.zeros((len(rows), width), dtype=torch.long)
            for i, row in enumerate(rows):  # left padding: every prompt ends where generation starts
                ids[i, width - len(row):] = torch.tensor(row, dtype=torch.long)
                mask[i, width - len(row):] = 1
            s = requests[0].sampling
            # Sampling draws from a local generator (as the hf: core does): the process-global RNG, which a
            # trainer in the same process relies on, is never reseeded.
            kwargs: dict[str, Any] = {"max_new_tokens": s.max_tokens, "pad_token_id": pad_id, "do_sample": False,
                                      "temperature": None, "top_p": None, "top_k": None}
            if s.temperature > 0:
                from transformers import LogitsProcessorList

                kwargs["logits_processor"] = LogitsProcessorList(
                    [_SampleWithGenerator(s.temperature, s.top_p, seed=self._batch_seed(requests))])
            if self.stop:
                kwargs.update(stop_strings=[self.stop], tokenizer=tok)
            with torch.no_grad():
                out = model.generate(ids.to(model.device), attention_mask=mask.to(model.device), **kwargs)
            latency = time.perf_counter() - start
        responses = []
        eos = {t for t in ([tok.eos_token_id, pad_id] + list(_as_list(model.generation_config.eos_token_id)))
               if t is not None}
        for i, row in enumerate(rows):
            new = [t for t in out[i, width:].tolist()]
            while new and new[-1] in eos:  # padding after a finished sequence is not output
                new.pop()
            text, stop = self._finish(tok.decode(new, skip_special_tokens=True))
            responses.append(CoreResponse(text=text, input_tokens=len(row), output_tokens=len(new),
                                          latency_s=latency / len(rows), backend=self.backend, model=self.model,
                                          stop_reason=stop))
        return responses

    def close(self) -> None:
        self._loader.close()


class GuideEngineError(FatalCoreError):
    """A local guide's engine cannot be built (e.g. vLLM finds no room for its KV cache): every
    generation would fail the same way, so the run stops at once (never an infra error per row)."""


class VLLMGuide(LocalBatchGuide):
    """``vllm:PATH[?KEY=VALUE&...]``: an offline vLLM engine, built once at the first generation.

    ``engine_options``: vLLM ``LLM(...)`` arguments (:data:`VLLM_ENGINE_OPTIONS`). A failed build is
    one :class:`GuideEngineError` with vLLM's reason and the option to change; it is kept and raised
    again (never rebuilt) if the guide is asked again.
    """

    backend = "vllm"

    def __init__(self, path: str, engine_options: dict[str, Any] | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        self.path = path
        self.engine_options = dict(engine_options or {})
        unknown = set(self.engine_options) - set(VLLM_ENGINE_OPTIONS)
        if unknown:
            raise ValueError(f"unknown vLLM engine option(s) {sorted(unknown)}; accepted: "
                             f"{', '.join(sorted(VLLM_ENGINE_OPTIONS))}")
        # the options that change the outputs are part of the model's name (records, summary, cache key)
        shown = "&".join(f"{k}={self.engine_options[k]}" for k in VLLM_OUTPUT_OPTIONS if k in self.engine_options)
        self.model = f"{path}?{shown}" if shown else path  # as guide_identity() names it
        try:
            import vllm  # noqa: F401
        except ImportError:
            raise ImportError(f"guide spec vllm:{path} needs vLLM, which is not installed; "
                              f"install the gpu extra (pip install 'gcop-env[gpu]') or serve the model and use "
                              f"openai:MODEL@http://HOST:PORT/v1") from None
        try:
            check_vllm_version(what=f"guide spec vllm:{path}")
        except RuntimeError as exc:
            raise ImportError(str(exc)) from None
        self._engine: Any = None
        self._build_error: GuideEngineError | None = None
        self._build_lock = threading.Lock()

    def engine(self) -> Any:
        """The vLLM engine, built on the first call; a GuideEngineError (the same one each time) if it cannot be."""
        with self._build_lock:
            if self._build_error is not None:
                raise self._build_error
            if self._engine is None:
                from vllm import LLM

                started = time.perf_counter()
                # vLLM builds the engine in child processes whose reason for failing goes to the log;
                # the exception here only says "see root cause above". Keep the log's tail to report the reason.
                tail, failure = _LogTail(), None
                with tail:
                    try:
                        self._engine = LLM(model=self.path, **self.engine_options)
                    except Exception as exc:  # noqa: BLE001 - any failure to build is the one fatal error
                        failure = exc
                if failure is not None:
                    tail.drain(timeout_s=5.0)  # the failed children's last lines
                    self._build_error = GuideEngineError(
                        engine_failure_message(f"vllm:{self.path}", failure, tail.text()), spec=self.spec,
                        kind="engine")
                    raise self._build_error from None
                log.info("guide vllm:%s: engine built in %.1f s", self.path, time.perf_counter() - started)
            return self._engine

    def _generate_batch(self, requests: Sequence[CoreRequest]) -> list[CoreResponse]:
        from vllm import SamplingParams as VSampling

        engine = self.engine()
        tokenizer = engine.get_tokenizer()
        prompts = []
        for r in requests:
            if getattr(tokenizer, "chat_template", None):
                messages = ([{"role": "system", "content": r.system}] if r.system else [])
                messages += [{"role": m.role, "content": m.content} for m in r.messages]
                prompts.append(tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
                               + self.prefill)
            else:
                prompts.append(render_completion_prompt(r) + self.prefill)
        # One seed per request (its key holds the sample index): N samples of one problem must differ.
        params = [VSampling(temperature=r.sampling.temperature, top_p=r.sampling.top_p,
                            max_tokens=r.sampling.max_tokens, seed=self._batch_seed([r]),
                            stop=[self.stop] if self.stop else None, include_stop_str_in_output=True)
                  for r in requests]
        start = time.perf_counter()
        outputs = engine.generate(prompts, params, use_tqdm=False)
        latency = time.perf_counter() - start
        responses = []
        for out in outputs:
            completion = out.outputs[0]
            text, stop = self._finish(completion.text)
            responses.append(CoreResponse(text=text, input_tokens=len(out.prompt_token_ids),
                                          output_tokens=len(completion.token_ids), latency_s=latency / len(prompts),
                                          backend=self.backend, model=self.model, stop_reason=stop))
        return responses

    def close(self) -> None:
        engine, self._engine = self._engine, None
        core = getattr(getattr(engine, "llm_engine", None), "engine_core", None)
        if core is not None and hasattr(core, "shutdown"):
            core.shutdown()  # the engine's processes end now, not whenever the object is collected


# vLLM's reasons for not building an engine, and the option that changes the outcome (first match wins)
_ENGINE_HINTS = (
    (re.compile(r"kv.?cache|memory|out of memory|OOM|VLLM_CPU_KVCACHE_SPACE", re.I),
     "size the KV cache with ?kv_cache_memory_bytes= (e.g. 1GiB; on vLLM's CPU backend VLLM_CPU_KVCACHE_SPACE=GiB "
     "overrides it) or change ?gpu_memory_utilization="),
    (re.compile(r"max.?model.?len|max_num_batched_tokens|context length", re.I),
     "set a smaller ?max_model_len="),
    (re.compile(r"head.?size|head_dim", re.I),
     "this model's attention head size is not supported by vLLM on this device (its CPU attention needs 32, 64, 80, "
     "96, 112, 128, 160, 192, 224 or 256): use hf:PATH"),
    (re.compile(r"dtype|bfloat16|float16", re.I), "set ?dtype= (auto, float32, bfloat16, float16)"),
)


def engine_failure_message(spec: str, exc: BaseException, log_tail: str = "") -> str:
    """One line: the engine could not be built, vLLM's reason (from the log when the exception only
    points there), and the option to change."""
    reason = f"{type(exc).__name__}: {exc}".strip()
    root = _root_cause(log_tail)
    if root and root not in reason:
        reason = f"{root} ({reason})"
    reason = " ".join(reason.split())
    hint = next((h for pattern, h in _ENGINE_HINTS if pattern.search(reason)),
                f"engine options: vllm:PATH?{'&'.join(f'{k}=...' for k in VLLM_ENGINE_OPTIONS)}")
    return f"guide {spec}: vLLM could not build its engine: {reason}. To fix: {hint}"


_ERROR_LINE = re.compile(r"^(?:.*?\] )?((?:[\w.]*Error|[\w.]*Exception): .+)$")
# lines that only point at another one: "Engine core initialization failed. See root cause above."
_WRAPPERS = re.compile(r"Engine core initialization failed|initialization failed due to an exception in a "
                       r"background process", re.I)


def _root_cause(log_tail: str) -> str:
    """The first ``SomeError: message`` line of vLLM's log (a child's traceback), without the log prefix,
    skipping the lines that only point at another one."""
    lines = [m.group(1).strip() for m in map(_ERROR_LINE.match, log_tail.splitlines()) if m]
    return next((line for line in lines if not _WRAPPERS.search(line)), "")


class _LogTail:
    """Copies what this process and its children write to file descriptors 1 and 2 while active (they
    still see it; vLLM logs to stdout, tracebacks go to stderr), keeping the last ``limit`` bytes.
    Children started inside keep writing through it after exit: the copying goes on until they close
    their end."""

    def __init__(self, fds: tuple[int, ...] = (1, 2), limit: int = 65536):
        self.fds, self.limit = fds, limit
        self._tail = b""
        self._lock = threading.Lock()
        self._saved: dict[int, int] = {}
        self._threads: list[threading.Thread] = []

    def __enter__(self) -> "_LogTail":
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError, AttributeError):
                pass
        for fd in self.fds:
            try:
                saved = os.dup(fd)
                read, write = os.pipe()
                os.dup2(write, fd)
                os.close(write)
            except OSError:  # no such descriptor to tee (an embedded interpreter): the exception alone then
                continue
            self._saved[fd] = saved
            thread = threading.Thread(target=self._pump, args=(read, saved), daemon=True, name=f"gcop-log-tail-{fd}")
            thread.start()
            self._threads.append(thread)
        return self

    def _pump(self, read: int, target: int) -> None:
        try:
            while chunk := os.read(read, 65536):
                with self._lock:
                    self._tail = (self._tail + chunk)[-self.limit:]
                try:
                    os.write(target, chunk)
                except OSError:
                    pass
        finally:
            os.close(read)
            os.close(target)

    def __exit__(self, *exc: Any) -> None:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError, AttributeError):
                pass
        for fd, saved in self._saved.items():
            os.dup2(saved, fd)  # the descriptor is the terminal (or file) again; the pipe's last writers are children

    def drain(self, timeout_s: float) -> None:
        """Wait (at most ``timeout_s`` in all) until every writer has closed the pipes and all is read."""
        deadline = time.monotonic() + timeout_s
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    def text(self) -> str:
        with self._lock:
            return self._tail.decode("utf-8", "replace")


def weights_fingerprint(path: str) -> str:
    """Names, sizes and modification times of a local model dir's files ("" for a hub id)."""
    folder = Path(path).expanduser()
    if not folder.is_dir():
        return ""
    digest = hashlib.sha256()
    for file in sorted(folder.iterdir()):
        if file.is_file() and file.suffix in (".safetensors", ".bin", ".gguf", ".json", ".model", ".pt"):
            stat = file.stat()
            digest.update(f"{file.name}:{stat.st_size}:{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


def is_fatal(exc: BaseException) -> bool:
    """A permanent configuration error (``FatalCoreError``: bad key, unknown model), not a per-row one."""
    return any(cls.__name__ == "FatalCoreError" for cls in type(exc).__mro__)


def _as_list(value: Any) -> list:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def make_guide(spec: str, *, cache: bool | str | ResponseCache | None = None, retry: RetryPolicy | None = None,
               timeout_s: float = 120.0, workers: int = 8, batch_size: int = 8, prefill: str = "",
               stop: str | None = DEFAULT_GUIDE_STOP) -> Guide:
    """Build a guide from its spec. ``cache`` as for :func:`gcop_env.make_core` (False: off)."""
    backend, model, options = parse_guide_spec(spec)
    if backend == "openai":
        if prefill:
            raise ValueError("--guide-prefill works with local guides (hf:, vllm:) only; a chat server has no prefill")
        return APIGuide(spec, cache=cache, retry=retry, timeout_s=timeout_s, workers=workers)
    if cache is False:
        store = None
    elif cache is None or cache is True:
        store = ResponseCache()
    elif isinstance(cache, ResponseCache):
        store = cache
    else:
        store = ResponseCache(cache)
    if backend == "vllm":
        return VLLMGuide(model, options, cache=store, batch_size=batch_size, prefill=prefill, stop=stop)
    return HFGuide(model, gguf_file=options.get("gguf_file"), cache=store, batch_size=batch_size,
                   prefill=prefill, stop=stop)
