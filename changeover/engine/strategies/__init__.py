"""changeover.engine.strategies."""
