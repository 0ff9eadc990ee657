"""The Teams adapter's exceptions; third-party errors are translated where they enter."""

from __future__ import annotations


class TeamsError(Exception):
    """Root of the Teams adapter's exceptions."""


class SigningKeysUnavailable(TeamsError):
    """Bot Framework's token signing keys could not be fetched (so no token can be checked)."""


class CredentialsError(TeamsError):
    """No token for calling the Bot Connector (wrong app id, secret, tenant or app type)."""


class DeliveryFailed(TeamsError):
    """The Bot Connector refused or did not answer a call, after any retries."""

    def __init__(self, status: int | None, code: str = "", message: str = "") -> None:
        super().__init__(f"Bot Connector call failed: {status or 'no response'} {code} {message}")
        self.status = status
        self.code = code
        self.message = message

    @property
    def stream_closed(self) -> bool:
        """Teams no longer accepts this stream: the user pressed Stop, or it timed out."""
        return self.status == 403 and self.code == "ContentStreamNotAllowed"

    @property
    def stream_timed_out(self) -> bool:
        """Teams ended the stream because it ran longer than its two-minute limit."""
        return self.stream_closed and "time" in self.message.lower()

    @property
    def streaming_unsupported(self) -> bool:
        """Streaming is not available in this conversation (Teams answers 400 BadArgument)."""
        return self.status == 400 and "streaming api is not enabled" in self.message.lower()
