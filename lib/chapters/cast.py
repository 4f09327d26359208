"""Chapter 0, "The cast": the three trained models every later chapter analyses (no checks of its own)."""

from __future__ import annotations

from lib.chapters.base import CAST, Request

CHAPTER = "00_cast"
TITLE = "0 · the cast"

RUNS = tuple(Request(role, role) for role in CAST)
