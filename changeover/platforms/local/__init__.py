"""changeover.platforms.local."""
