"""The golden model: PACT training (float path) and the integer reference (integer path)."""
