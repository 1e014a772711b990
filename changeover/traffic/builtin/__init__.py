"""changeover.traffic.builtin."""
