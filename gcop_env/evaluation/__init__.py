"""Evaluation: run conditions (core-only, ICL, guided, strategies), then report them with uncertainty.

:mod:`.config` (``EvalConfig``, presets) → :mod:`.conditions` (one small class per condition: add one
there) → :mod:`.run` (the run loop, resume) writing :mod:`.records` (one row per problem and sample)
and :mod:`.summary` (the metrics); :mod:`.guides` (guide specs), :mod:`.icl` (ICL retrieval),
:mod:`.stats` (intervals, paired tests), :mod:`.report` (Table 1, Figure 1). The command is
:mod:`gcop_env.cli.eval`."""
