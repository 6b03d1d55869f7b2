"""LLM backends, prompts and answer parsing for in-context extraction."""
