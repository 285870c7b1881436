"""Cross-cutting infrastructure, a package per concern: db, cache, http, messaging,
observability. At the top: the app config and the startup guard against weak or
published secrets."""
