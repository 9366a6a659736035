"""Runnable examples; a package so that ``--train examples.MODULE:FUNCTION`` imports them."""
