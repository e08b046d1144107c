"""What data may pass: inspection of requests and responses."""
