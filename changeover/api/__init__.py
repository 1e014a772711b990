"""changeover.api."""
