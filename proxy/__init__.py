"""Record, replay and analyse OpenAI-style Chat Completions traffic."""

__version__ = "0.1.0"
