"""The shared core: torch and the standard library only. Never imports textual or rich."""
