"""The Bot Framework credentials and what is wrong with them: one list of problems that the
bot logs at start and `chatbot doctor` prints (no botbuilder import: doctor stays light)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from adapters.teams.ids import is_guid

# off: Teams is turned off; broken: it runs but cannot reply; odd: it may work.
Severity = Literal["off", "broken", "odd"]


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with the Teams configuration, and how to fix it."""

    severity: Severity
    what: str
    fix: str


@dataclass(frozen=True, slots=True)
class TeamsCredentials:
    """MICROSOFT_APP_* as plain values."""

    app_id: str
    app_password: str | None
    app_type: str
    tenant_id: str

    def problems(self) -> list[Problem]:
        """What is missing or odd for the configured app type (nothing without an app id)."""
        if not self.app_id:
            return []
        found: list[Problem] = []
        if not is_guid(self.app_id):
            found.append(
                Problem(
                    "odd",
                    "MICROSOFT_APP_ID is not a GUID (Azure app ids look like "
                    "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)",
                    "copy the Microsoft App ID from the Azure Bot resource's Configuration page",
                )
            )
        if self.app_type != "UserAssignedMSI" and self.app_password is None:
            found.append(
                Problem(
                    "off" if self.app_type == "SingleTenant" else "broken",
                    f"MICROSOFT_APP_TYPE={self.app_type} needs MICROSOFT_APP_PASSWORD: the bot "
                    "cannot reply in Teams",
                    "create a client secret for the app (Azure portal, App registrations, "
                    "Certificates & secrets) and put it in MICROSOFT_APP_PASSWORD",
                )
            )
        if self.app_type in ("SingleTenant", "UserAssignedMSI") and not self.tenant_id:
            found.append(
                Problem(
                    "off",
                    f"MICROSOFT_APP_TYPE={self.app_type} needs MICROSOFT_APP_TENANT_ID",
                    "set MICROSOFT_APP_TENANT_ID to the Directory (tenant) ID of the app",
                )
            )
        return found
