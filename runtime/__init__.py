"""The shared runtime every service builds on: event store, relay, consumer, HTTP plumbing,
settings, logging and auth. It lives once here and imports no service."""
