"""changeover.platforms."""
