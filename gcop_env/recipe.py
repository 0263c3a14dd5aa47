"""How a guide was trained, recorded beside its weights so an evaluation can name its row.

The paper's Table 1 has one guided row per guide *recipe*:

===========  ====================================================================================
``None``     a plain model, not trained here (no ``gcop_recipe.json``)
``SFT``      ``gcop sft``: fine-tuned on curated strategies
``ExecTune`` ``gcop grpo``: GRPO on the structure-aware shaped reward (usually from an SFT guide)
``Advisor``  ``gcop grpo --recipe advisor``: GRPO on the task reward alone (Asawa et al., 2025): no
             structure requirement, β = γ = κ = 0; the guide's whole output goes to the core as advice
===========  ====================================================================================

``gcop sft`` and ``gcop grpo`` write :data:`RECIPE_FILE` into their output dir when the final
model is saved; :func:`read_recipe` reads it back (``gcop eval`` puts it in the table's Recipe
column and, for an ``Advisor`` guide, passes the whole output to the core).
"""

from __future__ import annotations

import enum
import json
from pathlib import Path
from typing import Any

from gcop_env.utils.files import write_text_atomic

RECIPE_FILE = "gcop_recipe.json"


class Recipe(str, enum.Enum):
    NONE = "None"
    SFT = "SFT"
    EXECTUNE = "ExecTune"
    ADVISOR = "Advisor"


class RecipeError(ValueError):
    """A ``gcop_recipe.json`` exists but cannot be read; the message names the file."""


def write_recipe(output_dir: str | Path, recipe: Recipe, **details: Any) -> Path:
    """Record ``recipe`` (and what it was trained from and with) in ``output_dir``."""
    from gcop_env._version import __version__

    path = Path(output_dir) / RECIPE_FILE
    payload = {"recipe": Recipe(recipe).value, "structure_required": recipe != Recipe.ADVISOR,
               "gcop_env": __version__, **details}
    return write_text_atomic(path, json.dumps(payload, indent=2, sort_keys=True) + "\n")


def read_recipe_details(path: str | Path) -> dict[str, Any] | None:
    """The recorded recipe of the guide at ``path`` as a dict, or None when it has none.

    ``path``: a model dir (``hf:`` prefix allowed), or a ``checkpoint-N`` dir inside a training
    output dir (the recipe of the run it belongs to). A hub id or other non-directory: None.
    """
    text = str(path)
    for prefix in ("hf:", "vllm:"):
        if text.startswith(prefix):
            text = text[len(prefix):]
    folder = Path(text).expanduser()
    if not folder.is_dir():
        return None
    candidates = [folder / RECIPE_FILE]
    if folder.name.startswith("checkpoint-"):
        candidates.append(folder.parent / RECIPE_FILE)
    for file in candidates:
        if file.is_file():
            try:
                payload = json.loads(file.read_text(encoding="utf-8"))
                Recipe(payload["recipe"])
            except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ValueError) as exc:
                raise RecipeError(f"{file} is not a valid recipe record ({type(exc).__name__}: {exc}); expected "
                                  f'{{"recipe": one of {[r.value for r in Recipe]}}}; delete it to treat the '
                                  f"model as a plain one") from None
            return payload
    return None


def read_recipe(path: str | Path) -> str:
    """The recipe name of the guide at ``path``: ``"SFT"``, ``"ExecTune"``, ``"Advisor"`` or ``"None"``."""
    details = read_recipe_details(path)
    return Recipe.NONE.value if details is None else Recipe(details["recipe"]).value


def structure_required(path: str | Path) -> bool:
    """False for an Advisor guide (its whole output is the advice), True for every other guide."""
    return read_recipe(path) != Recipe.ADVISOR.value
