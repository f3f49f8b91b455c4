"""Response caching: exact (normalised request hash) and semantic (similar question, same
context, no differing names or numbers). The stage is `stages/cache.py`."""
