"""changeover.engine."""
