"""``hf:PATH[?gguf_file=NAME]``: a local transformers causal LM, for offline use.

Models with a chat template get it; base models (no template, e.g. Gemma 3 270M) get a plain
completion-style prompt. A GGUF file is dequantised by transformers on first load and saved once
under the cache directory, so later loads take seconds. Calls are serialised (one model, one
lock); local calls cost $0.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from pathlib import Path

from gcop_env.cores.base import Core, CoreRequest, CoreResponse

log = logging.getLogger(__name__)


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

    def _dequantised_dir(self) -> Path:
        from gcop_env.cache import default_cache_dir

        gguf = Path(self._path) / self._gguf_file
        stat = gguf.stat()
        digest = hashlib.sha256(f"{gguf.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:16]
        return (self._cache_dir or default_cache_dir()) / "hf-dequantised" / digest

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
                          if self._tokenizer.pad_token_id is not None else self._tokenizer.eos_token_id}
            if s.temperature > 0:
                torch.manual_seed(1_000_003 * request.sample_index + 17)
                gen_kwargs.update(do_sample=True, temperature=s.temperature, top_p=s.top_p)
            else:
                gen_kwargs.update(do_sample=False)
            with torch.no_grad():
                out = self._model.generate(ids, attention_mask=torch.ones_like(ids), **gen_kwargs)
            new = out[0, ids.shape[1]:]
            text = self._tokenizer.decode(new, skip_special_tokens=True)
            latency = time.perf_counter() - start
        stop = "length" if len(new) >= s.max_tokens else "stop"
        return CoreResponse(text=text, input_tokens=int(ids.shape[1]), output_tokens=int(len(new)),
                            latency_s=latency, backend=self.backend, model=self.model, stop_reason=stop)

    def close(self) -> None:
        with self._lock:
            self._model = None
            self._tokenizer = None

    # Pickling sends the recipe, not the weights: the copy loads the model on its first call.
    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_model"] = state["_tokenizer"] = None
        del state["_lock"]
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()
