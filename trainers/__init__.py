"""The bundled ExecTune trainer: curation (teacher-guided acceptance sampling), strategy SFT and
structure-aware GRPO through TRL. Commands: ``gcop curate | sft | grpo`` (see :mod:`.cli`).

Importing this package is cheap: torch, transformers and TRL load only when a trainer runs.
"""
