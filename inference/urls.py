"""The one place credentials are taken out of URLs before a URL leaves the process
(``/readyz``, ``/metrics`` labels, logs, ``chatbot doctor``, ``chatbot index``, source
errors). Every layer imports it from here."""

from __future__ import annotations

import re

# scheme://userinfo@ : the user info runs to the last '@' before the path (a password may
# itself hold an unencoded '@').
_USERINFO = re.compile(r"(?P<scheme>(?<![A-Za-z0-9+.-])[A-Za-z][A-Za-z0-9+.-]{0,31}://)[^\s/?#]*@")


def public_url(text: str) -> str:
    """``text`` (a URL, or a message holding URLs) without any user name or password in
    its URLs: ``https://admin:pw@ollama:11434`` -> ``https://ollama:11434``."""
    return _USERINFO.sub(r"\g<scheme>", text)
