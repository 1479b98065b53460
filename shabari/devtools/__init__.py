"""Developer tooling that the tests and the Makefile use; never imported by the product."""
