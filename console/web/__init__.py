"""The console's server-rendered pages (Jinja2, htmx vendored in static/, no build step)."""
