"""kit.ensemble: combining prediction files: rules (max, correct, boost, weighted, soft) and files."""
