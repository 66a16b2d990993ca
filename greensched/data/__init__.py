"""Real-data adapters: each reads one public source into a tidy, UTC-indexed table."""
