"""What the tests share: import from here, not from other tests or conftest."""
