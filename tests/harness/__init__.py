"""Test harnesses that start real services (PostgreSQL, ...) for the test suite."""
