"""Where the file goes: object stores (S3 and local), the one S3 client factory, multipart merges, publishing."""
