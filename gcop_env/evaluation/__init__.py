"""Evaluation: run conditions (core-only, ICL, guided), then report them with uncertainty."""
