"""sidyp service: FastAPI app, settings and the `sidyp` command line."""
