"""Logic behind the routes that is more than a request and a response."""
