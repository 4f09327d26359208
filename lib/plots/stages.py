"""Figures of Chapter 3 (lesions, CKA, variance within stages)."""

__all__: list[str] = []
