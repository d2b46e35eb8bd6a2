"""STIX and TAXII value types: timestamps, markings, type tables, validation."""
