"""The notify domain: deadlines from events, the reminder plan, messages. Pure."""
