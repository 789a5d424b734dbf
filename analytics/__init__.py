"""DuckDB analytics over recorded interactions."""
