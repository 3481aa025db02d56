"""Pipelines as data: a recipe (YAML) lists stages and their settings; one runner executes it.

`kit run`, `kit demo`, the real-photo bench and the Kaggle notebook all call `run_recipe`, so what a
bench measured is what a notebook runs. Layout: `stage` (the Stage type, its registry and the context a
stage runs in), `recipe` (load + validate), `runner` (order, caching, resume, progress), `stages/`
(one module per family of stage functions)."""
