"""The model gateway: every model call of the lab goes through here.

Calls go through litellm, so any provider string works (``openai/…``, ``anthropic/…``,
``ollama_chat/…``, ``hosted_vllm/…`` with ``api_base``, any OpenAI-compatible server).
Two models run inside the lab itself: the embedded local model ``local/smollm2-135m`` (or
``local/<path-to-file.gguf>``) and the deterministic scripted model ``lab/scripted``.

Every call returns a `Completion` (text, tokens, cost, latency, time to first token, finish
reason) or raises one `ModelError`. Transient errors are retried with backoff; the
requested model is never replaced by another. litellm itself is imported on the first call,
not with this package.
"""

from . import scripted
from ._completion import Completion
from ._errors import KINDS, ModelError
from ._gateway import (
    DEFAULT_MAX_RETRIES,
    DEFAULT_TIMEOUT,
    LOCAL_DEFAULT,
    SCRIPTED,
    AsyncStream,
    CallOptions,
    Stream,
    acomplete,
    astream,
    complete,
    stream,
)
from ._local import embedded_model_path
from ._observer import Attempt, Watcher, watching
from ._rate_limiter import RateLimiter
from ._retry import RetryPolicy, retry_policy, set_retry_policy, using_retry_policy
from ._validation import check_model, missing_env, required_env

__all__ = [
    "DEFAULT_MAX_RETRIES",
    "DEFAULT_TIMEOUT",
    "KINDS",
    "LOCAL_DEFAULT",
    "SCRIPTED",
    "AsyncStream",
    "Attempt",
    "CallOptions",
    "Completion",
    "ModelError",
    "RateLimiter",
    "RetryPolicy",
    "Stream",
    "acomplete",
    "astream",
    "check_model",
    "complete",
    "embedded_model_path",
    "missing_env",
    "required_env",
    "retry_policy",
    "scripted",
    "set_retry_policy",
    "stream",
    "using_retry_policy",
    "watching",
    "Watcher",
]
