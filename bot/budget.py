"""Money: what a model's tokens cost, and the monthly premium budgets."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from inference.base import Usage

TOKENS_PER_PRICE_UNIT = 1_000_000


@dataclass(frozen=True, slots=True)
class Price:
    """US dollars per million prompt (input) and completion (output) tokens."""

    input_per_mtok: float
    output_per_mtok: float

    def cost(self, usage: Usage) -> float:
        """What ``usage`` costs, in US dollars."""
        return (
            usage.prompt_tokens * self.input_per_mtok
            + usage.completion_tokens * self.output_per_mtok
        ) / TOKENS_PER_PRICE_UNIT


def price_for(model: str, table: Mapping[str, Price]) -> Price | None:
    """The price of ``model``: its own entry, else the longest entry it is a dated or
    suffixed version of (``gpt-4o-2024-08-06`` -> ``gpt-4o``); None when unknown."""
    wanted = model.strip().lower()
    best: tuple[int, Price] | None = None
    for name, price in table.items():
        key = name.strip().lower()
        if (wanted == key or wanted.startswith(key + "-")) and (best is None or len(key) > best[0]):
            best = (len(key), price)
    return best[1] if best is not None else None


@dataclass(frozen=True, slots=True)
class Budgets:
    """Monthly premium budgets in US dollars; 0 means no limit."""

    user_usd: float = 0.0
    workspace_usd: float = 0.0

    @property
    def limited(self) -> bool:
        """Whether any budget applies."""
        return self.user_usd > 0 or self.workspace_usd > 0


@dataclass(frozen=True, slots=True)
class Spend:
    """Premium spend this month, in US dollars."""

    user_usd: float
    workspace_usd: float


def over_budget(budgets: Budgets, spend: Spend) -> Literal["user", "workspace"] | None:
    """Which budget ``spend`` has used up (the user's is reported first), if any."""
    if budgets.user_usd > 0 and spend.user_usd >= budgets.user_usd:
        return "user"
    if budgets.workspace_usd > 0 and spend.workspace_usd >= budgets.workspace_usd:
        return "workspace"
    return None


def month_start(now: datetime) -> datetime:
    """The start of ``now``'s calendar month in UTC (budgets reset then)."""
    utc = now.astimezone(UTC)
    return utc.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def next_month_start(now: datetime) -> datetime:
    """The start of the next calendar month in UTC."""
    start = month_start(now)
    if start.month == 12:
        return start.replace(year=start.year + 1, month=1)
    return start.replace(month=start.month + 1)


def format_usd(amount: float) -> str:
    """Dollars for people: two decimals, more for sub-cent amounts (``$0.0042``)."""
    if 0 < abs(amount) < 0.01:
        return f"${amount:.4f}"
    return f"${amount:,.2f}"


FREE = Price(0.0, 0.0)
"""The price of a model that costs nothing per token (a self-hosted one)."""

NO_BUDGETS = Budgets()
"""No monthly limit at all."""
