"""Analyses of Park & Kim (2022): each takes a model and images, never the training engine."""
