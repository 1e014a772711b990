"""changeover.traffic."""
