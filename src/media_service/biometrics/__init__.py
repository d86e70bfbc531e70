"""Biometric data: a person's consent to face processing, and erasure of their biometric
data alone (profile images, face crops and face metadata)."""
