"""``hf:PATH[?gguf_file=NAME]``: a local transformers causal LM, for offline use.

Models with a chat template get it; base models (no template, e.g. Gemma 3 270M) get a plain
completion-style prompt. A GGUF file is dequantised by transformers on first load and saved once
under the cache directory, so later loads take seconds. Calls are serialised (one model, one
lock); local calls cost $0.

Sampling (temperature > 0) draws from a local ``torch.Generator`` seeded by the request's
``sample_index``: the same request gives the same sample, and the process-global RNG (which a
guide being trained in the same process samples from) is never reseeded or advanced. Temperature 0
is greedy decoding, deterministic.

Cache keys carry a fingerprint of the weights (size and mtime of every weight file, hash of the
config), so a checkpoint retrained in place never serves the old model's cached answers.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from pathlib import Path

from gcop_env.cores.base import Core, CoreRequest, CoreResponse, SamplingParams

log = logging.getLogger(__name__)

_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".gguf", ".pt", ".pth", ".h5", ".msgpack")
_HASHED_FILES = ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json")


def weights_fingerprint(path: str, gguf_file: str | None = None) -> str:
    """A short hash that changes when the checkpoint at ``path`` changes.

    Local directory: name, size and mtime of every weight file, and the content of the config
    and tokenizer files. Hub id: the snapshot commit the local hub cache resolves it to (or the id
    alone when it is not cached yet).
    """
    h = hashlib.sha256()
    root = Path(path).expanduser()
    if root.is_file():
        stat = root.stat()
        h.update(f"{root.name}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    elif root.is_dir():
        for f in sorted(root.rglob("*")):
            if not f.is_file():
                continue
            rel = f.relative_to(root).as_posix()
            if f.name.endswith(_WEIGHT_SUFFIXES) and (gguf_file is None or not f.name.endswith(".gguf")
                                                       or f.name == gguf_file):
                stat = f.stat()
                h.update(f"{rel}:{stat.st_size}:{stat.st_mtime_ns};".encode())
            elif f.name in _HASHED_FILES:
                h.update(rel.encode() + b":" + hashlib.sha256(f.read_bytes()).digest())
    else:
        h.update(f"hub:{path}@{_hub_commit(path) or 'unresolved'}".encode())
    return h.hexdigest()[:24]


def local_model_problem(path: str) -> str | None:
    """Why ``path`` cannot be a model, when it is clearly a local path (not a hub id) that is missing.

    A hub id is ``name`` or ``owner/name``; an absolute path, ``./…``, ``~/…`` or one with more
    than one ``/`` is a local path and must exist (a hub lookup would only add a confusing error).
    """
    if os.path.exists(os.path.expanduser(path)):
        return None
    looks_local = (path.startswith(("/", "./", "../", "~")) or path.count("/") > 1
                   or (os.sep != "/" and os.sep in path))
    if looks_local:
        return f"{path} does not exist (give a local model directory or a hub id like Qwen/Qwen3-1.7B)"
    return None


def _hub_commit(repo_id: str) -> str | None:
    try:
        from huggingface_hub.constants import HF_HUB_CACHE
    except ImportError:  # pragma: no cover - transformers brings huggingface_hub
        return None
    ref = Path(HF_HUB_CACHE) / ("models--" + repo_id.replace("/", "--")) / "refs" / "main"
    return ref.read_text().strip() if ref.is_file() else None


class _SampleWithGenerator:
    """A logits processor that samples the next token with a local generator.

    ``generate`` runs greedy (no global RNG); this processor applies temperature and top-p, draws
    the token from ``generator`` and leaves only that token possible, so greedy picks it.
    """

    def __init__(self, temperature: float, top_p: float, seed: int):
        self.temperature = temperature
        self.top_p = top_p
        self.seed = seed
        self.generator = None  # made on the device of the scores at the first token

    def __call__(self, input_ids, scores):
        import torch

        if self.generator is None:
            self.generator = torch.Generator(device=scores.device).manual_seed(self.seed)

        logits = scores.float() / self.temperature
        probs = torch.softmax(logits, dim=-1)
        if self.top_p < 1.0:
            sorted_probs, order = torch.sort(probs, descending=True, dim=-1)
            outside = torch.cumsum(sorted_probs, dim=-1) - sorted_probs > self.top_p  # keep the first over top_p
            sorted_probs = sorted_probs.masked_fill(outside, 0.0)
            probs = torch.zeros_like(probs).scatter(-1, order, sorted_probs)
            probs = probs / probs.sum(dim=-1, keepdim=True)
        choice = torch.multinomial(probs, 1, generator=self.generator)
        out = torch.full_like(scores, float("-inf"))
        return out.scatter(-1, choice, 0.0)


def render_completion_prompt(request: CoreRequest) -> str:
    """A chat request as plain text for a base model."""
    parts = [request.system.strip()] if request.system else []
    for m in request.messages:
        parts.append(m.content.strip() if m.role == "user" else f"Response:\n{m.content.strip()}")
    return "\n\n".join(parts) + "\n\nResponse:\n"


class HFCore(Core):
    backend = "hf"

    def __init__(self, path: str, *, gguf_file: str | None = None, device: str | None = None,
                 dtype: str = "auto", cache_dir: str | Path | None = None):
        self.model = path if gguf_file is None else f"{path}?gguf_file={gguf_file}"
        self._path = path
        self._gguf_file = gguf_file
        self._device = device
        self._dtype = dtype
        self._cache_dir = Path(cache_dir) if cache_dir else None
        self._lock = threading.Lock()
        self._model = None
        self._tokenizer = None
        self._fingerprint: str | None = None

    def __getstate__(self) -> dict:
        # A pickled core carries its configuration, not the loaded model: it reloads on first use.
        state = dict(self.__dict__)
        for name in ("_lock", "_model", "_tokenizer"):
            state.pop(name, None)
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()
        self._model = None
        self._tokenizer = None

    def cache_identity(self) -> dict:
        # Computed once per core: a checkpoint rewritten while this process holds the loaded
        # model would be stale in memory anyway; a new process gets the new fingerprint.
        if self._fingerprint is None:
            self._fingerprint = weights_fingerprint(self._path, self._gguf_file)
        return {"weights": self._fingerprint}

    def sent_sampling(self, sampling: SamplingParams) -> dict:
        if sampling.temperature > 0:
            return {"temperature": sampling.temperature, "top_p": sampling.top_p, "max_tokens": sampling.max_tokens,
                    "do_sample": True}
        return {"max_tokens": sampling.max_tokens, "do_sample": False}

    def is_deterministic(self, sampling: SamplingParams) -> bool:
        return True  # greedy, or a sample seeded by sample_index: the same request, the same text

    def _dequantised_dir(self) -> Path:
        from gcop_env.cores.cache import default_cache_dir

        gguf = Path(self._path) / self._gguf_file
        stat = gguf.stat()
        digest = hashlib.sha256(f"{gguf.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:16]
        return (self._cache_dir or default_cache_dir()) / "hf-dequantised" / digest

    def load(self) -> None:
        """Load the model now (it loads on first use otherwise): a path that is not a model fails here."""
        with self._lock:
            self._load()

    def _load(self):
        if self._model is not None:
            return
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        source, kwargs = self._path, {}
        if self._gguf_file:
            saved = self._dequantised_dir()
            if (saved / "config.json").exists():
                source = str(saved)
            else:
                log.info("dequantising %s/%s (first load only)", self._path, self._gguf_file)
                kwargs = {"gguf_file": self._gguf_file}
        tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
        model = AutoModelForCausalLM.from_pretrained(source, dtype=self._dtype if self._dtype != "auto" else torch.float32, **kwargs)
        if self._gguf_file and source == self._path:
            # The weights are already dequantised to plain tensors; drop the GGUF marker so
            # save_pretrained writes them as an ordinary checkpoint (best effort: a failure
            # only costs the slow load next time).
            saved = self._dequantised_dir()
            try:
                model.hf_quantizer = None
                if hasattr(model.config, "quantization_config"):
                    del model.config.quantization_config
                saved.mkdir(parents=True, exist_ok=True)
                model.save_pretrained(saved)
                tokenizer.save_pretrained(saved)
            except Exception as exc:  # noqa: BLE001 - caching is an optimisation
                log.warning("could not save the dequantised model to %s: %s", saved, exc)
        device = self._device or ("cuda" if torch.cuda.is_available() else "cpu")
        model.to(device).eval()
        self._model, self._tokenizer = model, tokenizer

    def _prompt_ids(self, request: CoreRequest):
        tok = self._tokenizer
        if getattr(tok, "chat_template", None):
            messages = ([{"role": "system", "content": request.system}] if request.system else [])
            messages += [{"role": m.role, "content": m.content} for m in request.messages]
            text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            return tok(text, return_tensors="pt", add_special_tokens=False).input_ids
        return tok(render_completion_prompt(request), return_tensors="pt").input_ids

    def complete(self, request: CoreRequest) -> CoreResponse:
        import torch

        with self._lock:
            self._load()
            start = time.perf_counter()
            ids = self._prompt_ids(request).to(self._model.device)
            s = request.sampling
            gen_kwargs = {"max_new_tokens": s.max_tokens, "pad_token_id": self._tokenizer.pad_token_id
                          if self._tokenizer.pad_token_id is not None else self._tokenizer.eos_token_id,
                          "do_sample": False, "temperature": None, "top_p": None, "top_k": None}
            if s.temperature > 0:
                from transformers import LogitsProcessorList

                gen_kwargs["logits_processor"] = LogitsProcessorList(
                    [_SampleWithGenerator(s.temperature, s.top_p, seed=1_000_003 * request.sample_index + 17)])
            with torch.no_grad():
                out = self._model.generate(ids, attention_mask=torch.ones_like(ids), **gen_kwargs)
            new = out[0, ids.shape[1]:]
            text = self._tokenizer.decode(new, skip_special_tokens=True)
            latency = time.perf_counter() - start
        stop = "length" if len(new) >= s.max_tokens else "stop"
        return CoreResponse(text=text, input_tokens=int(ids.shape[1]), output_tokens=int(len(new)),
                            latency_s=latency, backend=self.backend, model=self.model, stop_reason=stop,
                            sampling=self.sent_sampling(s))

    def close(self) -> None:
        with self._lock:
            self._model = None
            self._tokenizer = None
