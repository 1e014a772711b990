"""Judges: turn measurements of canary and baseline into a verdict."""
