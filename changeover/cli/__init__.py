"""changeover.cli."""
