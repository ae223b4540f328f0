"""The embedded local stack (Redis, Ray, Serve, driver) and the `tunefleet` CLI."""
