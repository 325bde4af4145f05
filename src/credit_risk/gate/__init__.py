"""The promotion gate: rules in params.yaml (gate:), judged on the held-out rows, that block."""
