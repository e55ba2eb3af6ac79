"""Device credentials: the token format, how a secret is stored (hashed) and how a token is verified."""
