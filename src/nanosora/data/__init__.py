"""Manifest schema and IO, dataset adapters, torch datasets, caches."""
