"""The orderflow services (ingest, detector) and the command line."""
