"""The `sidyp` console script: engine commands, `serve`, `worker`, and (when installed) the HTTP client."""
