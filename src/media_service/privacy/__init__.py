"""Privacy: erasure and export of a person's data."""
