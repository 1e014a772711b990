"""Metric providers: one module each, behind the registry in ``providers.base``."""
