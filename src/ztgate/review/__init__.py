"""Who must agree: holding high-risk requests for a human decision."""
