"""LDAP / Active Directory: group membership grants and a live directory (ldap3)."""
