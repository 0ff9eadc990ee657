"""Azure ids as Teams and the Bot Framework use them."""

import re

_GUID = re.compile(r"^[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")


def is_guid(value: str) -> bool:
    """Whether ``value`` looks like an Azure app or tenant id (xxxxxxxx-xxxx-...-xxxxxxxxxxxx)."""
    return _GUID.match(value) is not None
