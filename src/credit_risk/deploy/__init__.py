"""Environments as code: what runs where is in git (deploy/<name>.yaml); targets make it so."""
