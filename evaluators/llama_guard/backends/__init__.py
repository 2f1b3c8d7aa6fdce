"""Model backends for Llama Guard: an OpenAI-compatible server, in-process vLLM, in-process transformers.

Each module imports its heavy dependencies only when a backend is built.
"""

from evaluators.llama_guard.backends.base import Backend, BackendError

__all__ = ["Backend", "BackendError"]
