"""aios-notebook."""
