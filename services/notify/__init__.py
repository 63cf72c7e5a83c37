"""Notify: review deadlines and reminders."""
