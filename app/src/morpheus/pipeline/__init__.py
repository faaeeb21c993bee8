"""The comic pipeline's pure domain: ingest, segment, compose, package."""
