"""The gateway: HTTP in (FastAPI on Ray Serve), Redis and storage out."""
