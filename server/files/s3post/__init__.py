"""An embedded S3-compatible browser-POST endpoint: signed policies in, objects on disk."""
