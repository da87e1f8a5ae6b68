"""SCIM 2.0 (RFC 7643/7644): group membership grants and a directory with managers."""
