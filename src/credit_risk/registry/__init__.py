"""The registry layer: model URIs, registration with lineage, tracing, and the shared stack."""
