"""The team API: the same assistant for editors, terminals, scripts and coding agents,
over OpenAI's Chat Completions API (`/v1/...`) and MCP (`/mcp`), authenticated by personal
tokens (`/token` in a DM with the bot)."""
