"""moto's server, applying one request at a time, as DynamoDB applies each request atomically.

moto's own `moto_server` handles requests on concurrent threads without a lock, and its
TransactWriteItems copies each table it touches and, when a condition fails, puts the copies
back: a transaction cancelled on one thread silently undoes what other threads wrote meanwhile.
Real DynamoDB never does that, and the concurrency tests (8 handlers racing for one threshold)
depend on it. Connections stay concurrent; each request runs under one lock.

    python moto_serial.py HOST PORT
"""

import sys
import threading

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from moto.server import MotoRequestHandler
from werkzeug.serving import run_simple


def main() -> None:
    host, port = sys.argv[1], int(sys.argv[2])
    app = DomainDispatcherApplication(create_backend_app)
    lock = threading.Lock()

    def serial(environ, start_response):
        with lock:
            # The whole response is produced under the lock: nothing runs lazily after it.
            return [b"".join(app(environ, start_response))]

    run_simple(host, port, serial, threaded=True, request_handler=MotoRequestHandler)


if __name__ == "__main__":
    main()
