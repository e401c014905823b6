"""What a command tells the user: progress bars and its way out (one line and exit code 2 for a mistake).
Rule: imports no torch; below every folder that builds or runs a model."""
