"""Media Service: stores photos, videos and documents and serves what their consumers need."""

__version__ = "0.1.0"
