"""changeover.spec."""
