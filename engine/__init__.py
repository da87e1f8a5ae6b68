"""Clearance's domain: policy, request lifecycle, approver resolution, audit chain.

Pure by rule: no I/O, no clock reads, no chat or database frameworks.
"""
