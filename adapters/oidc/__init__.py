"""Workload tokens: OIDC-style JWTs (GitHub Actions, GitLab, Kubernetes, SPIFFE JWT-SVID)
verified against the JWKS of the issuers the policy trusts."""

from adapters.oidc.verifier import OidcVerifier, TokenRejected, TrustedIssuer, VerifiedToken

__all__ = ["OidcVerifier", "TokenRejected", "TrustedIssuer", "VerifiedToken"]
