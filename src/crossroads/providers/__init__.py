"""Wire dialects: one module per upstream API format, behind the `Provider` protocol."""
