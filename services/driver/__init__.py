"""The driver: takes jobs from the Redis queue and runs each with Ray Tune."""
