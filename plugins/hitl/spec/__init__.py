"""Workflow specs: their shape (``schema``) and loading with located errors (``loader``)."""
