"""changeover.analysis."""
