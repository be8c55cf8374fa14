"""Object stores (S3 and local), the one S3 client factory, multipart merges, and finding input tables."""
