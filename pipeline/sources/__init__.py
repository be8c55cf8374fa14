"""Where rows come from: tables (Parquet and CSV files) and query engines (DuckDB).

Each kind finds its tables, checks their schemas before any data is read, plans read tasks,
and reads a task as Arrow record batches, so nothing downstream knows where rows came from.
"""
