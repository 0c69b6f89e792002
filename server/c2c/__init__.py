"""c2c.v1: the C2C contact assets — what a file must be to be accepted, and how it is
stored and served."""
