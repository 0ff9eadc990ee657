"""The platform-neutral core: messages, commands, memory, dedupe, persistence."""
