"""Data migrations of the events feature."""
