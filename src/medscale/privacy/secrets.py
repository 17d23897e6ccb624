"""Credentials never reach a report, a manifest or a log: mask them on the way out."""

from __future__ import annotations

import re

# scheme://user:password@host -> scheme://user:***@host ; also ?token=... style parameters.
_URL_PASSWORD = re.compile(r"(?P<head>[a-zA-Z][a-zA-Z0-9+.-]*://[^/\s:@]*:)[^@/\s]+(?=@)")
_SECRET_PARAMS = re.compile(
    r"(?P<head>[?&](?:password|passwd|pwd|token|access_token|secret|key|api_key|sig)=)[^&\s]+",
    re.IGNORECASE,
)


def mask_credentials(text: str) -> str:
    """``text`` with URL passwords and secret query parameters replaced by ``***``."""
    text = _URL_PASSWORD.sub(r"\g<head>***", text)
    return _SECRET_PARAMS.sub(r"\g<head>***", text)
