#!/usr/bin/env python3
"""Stock moto_server (same command line), answering one request at a time.

moto's DynamoDB checks a write's condition and then writes, with nothing
between two requests that run at once on werkzeug's threads: two
conditional UpdateItems on one item can both succeed. DynamoDB makes each
conditional write atomic, and the coordination table's rotation lease
relies on it (one of two replicas asking at once gets it). Measured with
moto 5.2.5: 4 of 1,000 pairs of simultaneous `attribute_not_exists`
UpdateItems both succeeded. Run one at a time, moto's answers are those of
a store whose single-item writes are atomic, as DynamoDB's are.

Connections are still served by threads (keep-alive, and a request that
waits for the lock does not stop the others from being read).
"""

import threading

import moto.server as server


class OneAtATime(server.DomainDispatcherApplication):
    """moto's dispatcher, with every request run to its end under one lock."""

    _lock = threading.Lock()

    def __call__(self, environ, start_response):
        with self._lock:
            answer = super().__call__(environ, start_response)
            try:
                return [b"".join(answer)]
            finally:
                close = getattr(answer, "close", None)
                if close is not None:
                    close()


# moto.server.main builds its application from this name.
server.DomainDispatcherApplication = OneAtATime

if __name__ == "__main__":
    server.main()
