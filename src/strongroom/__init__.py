"""strongroom: deduplicating, encrypted backups for chat exports and knowledge bases."""

__version__ = "0.1.0"
