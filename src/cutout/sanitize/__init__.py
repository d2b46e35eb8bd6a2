"""What leaves the broker: per-consumer sanitized copies, and feedback mapped back to providers."""
