"""What the routes do, without HTTP: each function takes settings/store/tenant and typed inputs."""
