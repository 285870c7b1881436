"""Container HEALTHCHECK: exit 0 if this container's web server answers /healthz.

Standard library only, so it starts fast and needs nothing the image lacks (no curl).
Host is `localhost`, which DJANGO_ALLOWED_HOSTS must keep (docs/deploy.md).
"""

import os
import sys
import urllib.request

URL = f"http://127.0.0.1:{os.environ.get('PORT', '8000')}/healthz"


def main() -> int:
    """Return 0 when /healthz answers 200 within two seconds, else 1."""
    request = urllib.request.Request(URL, headers={"Host": "localhost"})
    try:
        with urllib.request.urlopen(request, timeout=2) as response:  # noqa: S310 (fixed http URL)  # nosec B310
            return 0 if response.status == 200 else 1
    except OSError as error:
        print(f"healthcheck: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
