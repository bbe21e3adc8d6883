"""Fault tests: failing models, interrupted migrations, a locked database, killed servers, several replicas."""
