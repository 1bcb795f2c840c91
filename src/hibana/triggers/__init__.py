"""Trigger sources: each turns its input into an ``Invocation``."""
