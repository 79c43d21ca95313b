"""API routers (version 1) and the dashboard router; each module builds one APIRouter."""
