"""Guide models chosen by a spec string, behind one batch interface: guide prompts in, outputs out.

Spec forms (like a core's, see :func:`gcop_env.make_core`):

* ``hf:PATH`` / ``hf:PATH?gguf_file=NAME``  local transformers weights (e.g. a ``gcop sft`` or
  ``gcop grpo`` output dir); batched generation; the chat template when the tokenizer has one,
  else a completion-style prompt (base models).
* ``openai:MODEL@http://HOST:PORT/v1`` (or ``openai:MODEL`` with ``OPENAI_BASE_URL``)  any
  OpenAI-compatible server (``vllm serve``, llama.cpp); the core backend with its retries and
  response cache, so a re-run costs 0 calls.
* ``vllm:PATH``  an offline vLLM engine in this process (needs the ``gpu`` extra: ``pip install
  'gcop-env[gpu]'``).

Every guide answers from the on-disk response cache first, so resuming or re-running an
evaluation regenerates nothing. A failed generation is a :class:`~gcop_env.cores.CoreError`
(an infrastructure error), never an empty strategy.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import time
from abc import ABC, abstractmethod
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Sequence

from gcop_env.cores.cache import ResponseCache, request_key
from gcop_env.cores import make_core, parse_core_spec
from gcop_env.cores.base import CoreError, CoreRequest, CoreResponse, Message, SamplingParams
from gcop_env.cores.hf_core import HFCore, _SampleWithGenerator, render_completion_prompt
from gcop_env.cores.retry import RetryPolicy
from gcop_env.step.prompts import PROMPT_VERSION, guide_prompt

log = logging.getLogger(__name__)

GUIDE_SPEC_FORMS = ("hf:PATH or hf:PATH?gguf_file=NAME, openai:MODEL or openai:MODEL@http://HOST:PORT/v1, "
                    "vllm:PATH")
LOCAL_BACKENDS = frozenset({"hf", "vllm"})
# The paper samples the guide at temperature 0.6, top-p 0.95 in evaluation.
DEFAULT_GUIDE_SAMPLING = SamplingParams(temperature=0.6, top_p=0.95, max_tokens=2048)
# The guide's output format ends with the strategy block: a base model that goes on writing after
# it would be malformed only because it does not know when to stop.
DEFAULT_GUIDE_STOP = "</strategy>"


def parse_guide_spec(spec: str) -> tuple[str, str, dict[str, str]]:
    """Split a guide spec into (backend, model, options). Raises ValueError listing the valid forms."""
    if not isinstance(spec, str) or ":" not in spec:
        raise ValueError(f"invalid guide spec {spec!r}; expected one of: {GUIDE_SPEC_FORMS}")
    backend, rest = spec.split(":", 1)
    backend = backend.strip().lower()
    if backend == "vllm":
        if not rest.strip():
            raise ValueError(f"invalid guide spec {spec!r}; expected vllm:PATH")
        return "vllm", rest.strip(), {}
    if backend not in ("hf", "openai"):
        raise ValueError(f"invalid guide spec {spec!r}; expected one of: {GUIDE_SPEC_FORMS}")
    try:
        return parse_core_spec(spec)
    except ValueError as exc:
        raise ValueError(str(exc).replace("core spec", "guide spec")) from None


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

    @abstractmethod
    def generate(self, requests: Sequence[CoreRequest]) -> list[CoreResponse | CoreError]:
        """Outputs (or the infrastructure error) for each request."""

    def load(self) -> None:
        """Load what generating needs (a local model) now, before the first batch; a guide that cannot
        load fails here, once, instead of failing every batch as infrastructure. API guides: nothing."""

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

    def __init__(self, spec: str, *, cache: Any = None, retry: RetryPolicy | None = None,
                 timeout_s: float = 120.0, workers: int = 8):
        self.core = make_core(spec, cache=cache, retry=retry, timeout_s=timeout_s)
        self.backend, self.model = self.core.backend, self.core.model
        self._spec = self.core.spec
        self.workers = max(1, workers)

    @property
    def spec(self) -> str:
        return self._spec

    def _one(self, request: CoreRequest) -> CoreResponse | CoreError:
        try:
            return self.core.complete(request)
        except CoreError as exc:
            if is_fatal(exc):
                raise  # a bad key or an unknown model: every request would fail, stop the run
            return exc

    def generate(self, requests: Sequence[CoreRequest]) -> list[CoreResponse | CoreError]:
        if len(requests) <= 1 or self.workers == 1:
            return [self._one(r) for r in requests]
        with ThreadPoolExecutor(max_workers=min(self.workers, len(requests))) as pool:
            return list(pool.map(self._one, requests))

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


class VLLMGuide(LocalBatchGuide):
    """``vllm:PATH``: an offline vLLM engine (GPU). Imported lazily; not exercised by the CPU tests."""

    backend = "vllm"

    def __init__(self, path: str, **kwargs: Any):
        super().__init__(**kwargs)
        self.model = path
        try:
            import vllm  # noqa: F401
        except ImportError:
            raise ImportError(f"guide spec vllm:{path} needs vLLM, which is not installed; "
                              f"install the gpu extra (pip install 'gcop-env[gpu]') or serve the model and use "
                              f"openai:MODEL@http://HOST:PORT/v1") from None
        self._engine = None

    def _generate_batch(self, requests: Sequence[CoreRequest]) -> list[CoreResponse]:
        from vllm import LLM
        from vllm import SamplingParams as VSampling

        if self._engine is None:
            self._engine = LLM(model=self.model)
        tokenizer = self._engine.get_tokenizer()
        prompts = []
        for r in requests:
            if getattr(tokenizer, "chat_template", None):
                messages = [{"role": m.role, "content": m.content} for m in r.messages]
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
        outputs = self._engine.generate(prompts, params)
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
        self._engine = None


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
        return VLLMGuide(model, cache=store, batch_size=batch_size, prefill=prefill, stop=stop)
    return HFGuide(model, gguf_file=options.get("gguf_file"), cache=store, batch_size=batch_size,
                   prefill=prefill, stop=stop)
