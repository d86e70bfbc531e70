"""Audit trail: who read, changed, shared or deleted the media of students and class
sessions, and when (issue 8 point 4; see docs/privacy.md, "Audit trail")."""
