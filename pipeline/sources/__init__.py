"""Where rows come from: tables (Parquet and CSV files), lake tables (Delta, Iceberg) and query
engines (DuckDB, ADBC warehouses).

Each kind finds its tables, checks their schemas before any data is read, plans read tasks,
and reads a task as Arrow record batches, so nothing downstream knows where rows came from.
"""
