"""Monitoring: what the service scored (the prediction log), the outcomes that came later, and
what watches them. Stands on the shared core (contract, config, errors); the service imports it,
never the other way round."""
