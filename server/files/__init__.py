"""files.v1: the Close-compatible Files API — uploads through signed S3-style POST forms,
24-hour download URLs, and email activities that attach them."""
