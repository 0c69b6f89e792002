"""Per-surface HTTP rules: one module per public API, nothing of transcoding in them."""
