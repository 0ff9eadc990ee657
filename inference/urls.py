"""The one place credentials are taken out of URLs before a URL leaves the process
(``/readyz``, ``/metrics`` labels, logs, ``chatbot doctor``, ``chatbot index``, source
errors). Every layer imports it from here."""

from __future__ import annotations

import re

# scheme://userinfo@ : the user info runs to the last '@' before the path (a password may
# itself hold an unencoded '@').
_USERINFO = re.compile(r"(?P<scheme>(?<![A-Za-z0-9+.-])[A-Za-z][A-Za-z0-9+.-]{0,31}://)[^\s/?#]*@")


# A query parameter whose name says it holds a secret (``?token=``, ``&api_key=``,
# ``&sig=``...): its value is replaced (up to the punctuation of a message after the URL).
# Matched in URLs only (after ``?``, ``&`` or ``;`` inside one).
_SECRET_PARAM = re.compile(
    r"(?P<name>(?<=[?&;])[\w.-]*?(?:token|key|secret|password|passwd|pwd|sig|signature|auth"
    r"|credential|session)[\w.-]*=)(?P<value>[^&#\s]*[^&#\s:,.;)'\"])",
    re.IGNORECASE,
)
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]{0,31}://[^\s]+")
SECRET_VALUE = "REDACTED"


def public_url(text: str) -> str:
    """``text`` (a URL, or a message holding URLs) without any user name or password in
    its URLs, nor the values of their query parameters named like secrets:
    ``https://admin:pw@ollama:11434`` -> ``https://ollama:11434``,
    ``https://wiki/export?token=abc&page=2`` -> ``https://wiki/export?token=REDACTED&page=2``."""
    text = _USERINFO.sub(r"\g<scheme>", text)
    return _URL.sub(lambda url: _SECRET_PARAM.sub(rf"\g<name>{SECRET_VALUE}", url[0]), text)
