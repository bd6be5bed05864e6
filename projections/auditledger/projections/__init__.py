"""Relational projections of the event log: the landscape tables, their runner and reads."""
