"""Real-data adapters: each turns one public source into a tidy, UTC-indexed, unit-converted table."""
