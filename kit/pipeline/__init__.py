"""Pipelines as data: a recipe (YAML) lists stages and their settings; one runner executes it, so what
`kit run`, `kit demo`, a bench or the Kaggle notebook measured is what the others run."""
