"""The analytics page for the team lead: a door of its own (`/admin`), read-only, drawn on
the server. ``register_admin_routes`` adds its routes to the bot's aiohttp application."""

from adapters.admin.auth import BearerResolver, no_bearer_tokens
from adapters.admin.routes import register_admin_routes

__all__ = ["BearerResolver", "no_bearer_tokens", "register_admin_routes"]
