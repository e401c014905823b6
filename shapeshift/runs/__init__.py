"""Run folders and the numbers in them: names, fingerprints, claiming and finishing, metric keys.
Rule: imports no torch and nothing of shapeshift outside this folder (a report reads runs in a blink)."""
