"""kit.report: the `kit report` HTML page. collect (inputs, truth, files, scores: no HTML), html (page
pieces), sections (one function per section), render (the page from page.html.j2), saliency (report 001)."""
