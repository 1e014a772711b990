"""changeover.controller."""
