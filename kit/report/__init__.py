"""kit.report: the `kit report` HTML page: collect (no HTML), html, sections, render, saliency."""
