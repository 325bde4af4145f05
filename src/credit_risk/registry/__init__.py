"""The registry layer: model URIs, registration, the shared stack."""
