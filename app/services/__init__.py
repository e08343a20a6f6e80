"""Domain rules shared by screens, both APIs, the CLI and workers."""
