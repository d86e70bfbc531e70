"""Who is calling: bearer tokens, principals and the first-start secret."""
