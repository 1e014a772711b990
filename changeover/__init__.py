"""changeover: progressive delivery for model and web services, from laptop to cluster."""

__version__ = "0.1.0"
