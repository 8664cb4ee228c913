"""Weights: the registry of official files, the local store, verified downloads and safe checkpoint reading."""
