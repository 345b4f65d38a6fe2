"""The admin HTTP API under /api/admin/: bearer-token authenticated, tenant from the token."""
