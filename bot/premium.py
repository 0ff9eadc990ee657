"""The premium route: who may use it, its monthly budgets, and what `/model` says of it."""

from __future__ import annotations

import logging
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime

from bot import replies
from bot.budget import (
    FREE,
    NO_BUDGETS,
    Budgets,
    Price,
    Spend,
    format_usd,
    month_start,
    next_month_start,
    over_budget,
)
from bot.conversation import IncomingMessage
from bot.database import DatabaseError
from bot.errors import UserFacingError
from bot.ledger import Ledger
from bot.outages import log_outage
from bot.replies import GENERIC_NAMES, ProviderNames
from inference.base import ChatModel

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Premium:
    """The premium route: a model, who may use it (``None`` users = everyone), what its
    tokens cost and the monthly budgets checked before each call."""

    model: ChatModel
    allowed_users: Collection[str] | None
    price: Price = FREE
    budgets: Budgets = NO_BUDGETS

    def allows(self, user: str) -> bool:
        """Whether ``user`` is on the allowlist."""
        return self.allowed_users is None or user in self.allowed_users


class PremiumAccount:
    """Reads premium spend from the usage ledger: budget checks and the `/model` lines."""

    def __init__(
        self,
        *,
        premium: Premium,
        ledger: Ledger | None,
        local_model: str,
        names: ProviderNames = GENERIC_NAMES,
    ) -> None:
        self._premium = premium
        self._ledger = ledger
        self._local = local_model
        self._names = names

    async def spend(self, message: IncomingMessage, now: datetime) -> Spend:
        """This month's premium spend of the sender and of their workspace."""
        if self._ledger is None:
            raise DatabaseError("no usage ledger configured")
        return await self._ledger.spend_since(
            user=message.sender, workspace=message.key.workspace, since=month_start(now)
        )

    async def check_budget(self, message: IncomingMessage, now: datetime) -> None:
        """Refuse (``UserFacingError``) a premium call over budget, or when the budget cannot
        be checked: never spend without knowing the budget."""
        budgets = self._premium.budgets
        if not budgets.limited:
            return
        try:
            spend = await self.spend(message, now)
        except DatabaseError as exc:
            log_outage(log, "usage ledger unavailable; premium refused", exc)
            raise UserFacingError(
                self._names.fill(replies.PREMIUM_BUDGET_UNKNOWN, local_model=self._local),
                reason="unavailable",
            ) from None
        exceeded = over_budget(budgets, spend)
        if exceeded is None:
            return
        if exceeded == "user":
            text, spent, budget = replies.PREMIUM_OVER_USER_BUDGET, spend.user_usd, budgets.user_usd
        else:
            text, spent, budget = (
                replies.PREMIUM_OVER_WORKSPACE_BUDGET,
                spend.workspace_usd,
                budgets.workspace_usd,
            )
        reset = next_month_start(now)
        raise UserFacingError(
            self._names.fill(
                text,
                spent=format_usd(spent),
                budget=format_usd(budget),
                reset=f"{reset:%B} {reset.day}",
                local_model=self._local,
            ),
            reason="forbidden",
        )

    async def spend_lines(self, message: IncomingMessage, now: datetime) -> list[str]:
        """`/model`'s lines on the sender's (and the workspace's) spend this month."""
        if not self._premium.allows(message.sender):
            return [replies.PREMIUM_SPEND_NOT_ALLOWED]
        try:
            spend = await self.spend(message, now)
        except DatabaseError as exc:
            log_outage(log, "usage ledger unavailable; spend not shown", exc)
            return [replies.PREMIUM_SPEND_UNKNOWN]
        budgets = self._premium.budgets
        lines = [
            replies.PREMIUM_SPEND.format(
                spent=format_usd(spend.user_usd), budget=format_usd(budgets.user_usd)
            )
            if budgets.user_usd > 0
            else replies.PREMIUM_SPEND_NO_LIMIT.format(spent=format_usd(spend.user_usd))
        ]
        if budgets.workspace_usd > 0:
            lines.append(
                replies.PREMIUM_WORKSPACE_SPEND.format(
                    spent=format_usd(spend.workspace_usd),
                    budget=format_usd(budgets.workspace_usd),
                )
            )
        return lines
