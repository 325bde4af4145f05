"""Environments as code: what runs where is in git (deploy/<environment>.yaml), and targets make it so."""
