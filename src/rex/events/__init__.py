"""Events: the catalogue of what Rex emits, and the events API."""
