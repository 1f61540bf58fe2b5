"""Configuration passes: the typed schema, composition with Hydra, validation rules."""
