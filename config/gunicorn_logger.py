"""gunicorn's access log as one JSON object a line, for log shippers.

gunicorn's own `access_log_format` cannot escape quotes in a user agent or path, so a
crafted header could break a hand-written JSON template; json.dumps here cannot.
"""

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from gunicorn import glogging  # type: ignore[import-untyped]


class JsonAccessLogger(glogging.Logger):
    """A gunicorn logger whose access lines are JSON; error lines are unchanged."""

    def access(self, resp: Any, req: Any, environ: dict[str, Any], request_time: timedelta) -> None:
        """Write one JSON line for a finished request (no query string: it may hold secrets)."""
        if not self.access_log_enabled:
            return
        status = str(resp.status).split(None, 1)[0]
        record = {
            "time": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "level": "info",
            "logger": "gunicorn.access",
            "method": environ.get("REQUEST_METHOD"),
            "path": environ.get("PATH_INFO"),
            "status": int(status) if status.isdigit() else status,
            "duration_ms": round(request_time.total_seconds() * 1000, 1),
            "bytes": getattr(resp, "sent", None),
            "client_ip": environ.get("REMOTE_ADDR"),
            "user_agent": environ.get("HTTP_USER_AGENT"),
            "request_id": environ.get("HTTP_X_REQUEST_ID"),
        }
        self.access_log.info(json.dumps(record))
