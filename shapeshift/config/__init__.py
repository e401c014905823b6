"""What a config may say: the structured-config schemas (schema.py), the value checks (validation.py), the
command-line check before Hydra (preflight.py). Rule: knows no data, model or run; only schema.py loads
Lightning (for the Trainer's arguments), so `shapeshift.config.errors` stays importable without torch."""
