"""What runs between requests: state, background checks, cluster, webhook, stream."""
