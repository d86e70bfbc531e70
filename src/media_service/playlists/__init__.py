"""Playlists (spec 003 §3): manual, smart (kept current from metadata events) and AI-curated."""
