"""The scripted model ``lab/scripted``: queue replies and failures for tests and demos.

```python
from lab.llm import scripted
scripted.enqueue("hello", scripted.ModelFailure("rate_limit"))
```

See `lab.llm._scripted` for the scripts a study can choose with the parameter ``script``.
"""

from ._scripted import DEFAULT_ANSWER, DEFAULT_QUESTION, FAILURE_KINDS, SCRIPTS, ModelFailure, enqueue, pending, reset

__all__ = ["DEFAULT_ANSWER", "DEFAULT_QUESTION", "FAILURE_KINDS", "SCRIPTS", "ModelFailure", "enqueue", "pending", "reset"]
