"""Alembic migrations of the bot's database (configured in code by bot.database)."""
