"""Code that more than one tunefleet service uses. Imports no service."""
