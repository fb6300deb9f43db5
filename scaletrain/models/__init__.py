"""Model registry: names map to builders; see registry.build_model."""
