"""Roster: organisation, members and their four categories, responsibility and care."""
