"""Database plumbing shared by every domain: base model, engine, unit of work, migrations."""
