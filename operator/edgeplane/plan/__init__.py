"""Desired vs observed -> what to do, and what status to report (pure; no I/O)."""
