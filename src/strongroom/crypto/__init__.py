"""Key material, the AEAD, and sealed standalone objects."""
