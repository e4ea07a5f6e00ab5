"""An OpenAI-compatible chat endpoint used as MMBench's answer-matching judge.

lmms-eval sends the MMBench replies its rule cannot read to a GPT model and reads a letter
from the model's answer. :class:`ChatJudge` does the same request against any endpoint that
speaks the OpenAI chat-completions protocol (OpenAI itself, vLLM, llama.cpp's server...),
through the ``openai`` client (``pip install 'vtwcli[judge]'``).

Request and retry behaviour follow lmms-eval's MMBench evaluator: one user message,
temperature 0, at most 256 tokens, up to five attempts per request (an empty answer counts as
a failed attempt), and the fixed text ``Failed to obtain answer via API`` when all five fail.
One difference, so a typo does not cost hours: when the very first request of a run cannot
reach the endpoint, or is refused (wrong URL, model or key), scoring stops with a
:class:`~vtwcli.errors.JudgeError` instead of quietly falling back to random letters.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

from vtwcli.errors import JudgeError, MissingExtraError

FAILED = "Failed to obtain answer via API"
ATTEMPTS = 5
RETRY_SLEEP_S = 3.0
MAX_TOKENS = 256


def _base_url(url: str) -> str:
    """The client wants the API root; lmms-eval's setting names the full chat-completions URL."""
    url = url.strip().rstrip("/")
    suffix = "/chat/completions"
    return url[: -len(suffix)] if url.endswith(suffix) else url


@dataclass
class ChatJudge:
    """``ask(prompt) -> str``: the judge model's answer, or :data:`FAILED`.

    ``url``: the endpoint's API root (``http://host:8000/v1``) or its full
    ``.../chat/completions`` URL. ``api_key``: default ``$OPENAI_API_KEY``, else ``EMPTY``
    (local servers ignore it). ``retry_sleep_s``: pause after a failed attempt (lmms-eval: 3 s).
    """

    url: str
    model: str
    api_key: str | None = None
    timeout_s: float = 30.0
    retry_sleep_s: float = RETRY_SLEEP_S
    calls: int = 0  # requests that got an answer
    failures: int = 0  # requests that ended in FAILED
    _client: object = field(default=None, repr=False)

    def __post_init__(self):
        if not self.url or not str(self.url).strip():
            raise JudgeError("--judge-url is empty; give the endpoint, e.g. http://127.0.0.1:8000/v1")
        if not self.model or not str(self.model).strip():
            raise JudgeError("--judge-model is empty; give the model name the endpoint serves")

    def _connect(self):
        if self._client is None:
            try:
                import openai
            except ImportError as err:
                raise MissingExtraError(
                    "the MMBench judge needs the openai client: pip install 'vtwcli[judge]'"
                ) from err
            key = self.api_key or os.environ.get("OPENAI_API_KEY") or "EMPTY"
            # max_retries=0: the retry loop is lmms-eval's, below, not the client's own.
            self._client = openai.OpenAI(base_url=_base_url(self.url), api_key=key, timeout=self.timeout_s,
                                         max_retries=0)
        return self._client

    def ask(self, prompt: str) -> str:
        client = self._connect()
        import openai

        first = self.calls == 0 and self.failures == 0
        for attempt in range(ATTEMPTS):
            try:
                response = client.chat.completions.create(
                    model=self.model, messages=[{"role": "user", "content": prompt}],
                    temperature=0, max_tokens=MAX_TOKENS, n=1,
                )
            except (openai.APIConnectionError, openai.AuthenticationError, openai.NotFoundError,
                    openai.PermissionDeniedError, openai.BadRequestError) as err:
                if first:
                    raise JudgeError(
                        f"the judge at {self.url} (model {self.model!r}) did not answer: {err}. "
                        "Check --judge-url (the API root, e.g. http://127.0.0.1:8000/v1), --judge-model "
                        "and OPENAI_API_KEY"
                    ) from err
            except openai.OpenAIError:
                pass
            else:
                content = (response.choices[0].message.content or "").strip() if response.choices else ""
                if content:
                    self.calls += 1
                    return content
                continue  # lmms-eval retries an empty answer at once
            if attempt < ATTEMPTS - 1 and self.retry_sleep_s > 0:
                time.sleep(self.retry_sleep_s)
        self.failures += 1
        return FAILED
