"""lorakit's own serving engine: load, bind, serve with uvicorn, stop cleanly on SIGTERM.

SIGTERM or Ctrl-C stops accepting connections at once; requests in flight get ``grace`` seconds
to finish (streams keep streaming), whatever is left is cancelled, and the process exits 0.
uvicorn's own handlers would re-raise the signal after shutting down (exit status -15), so the
server installs its own.
"""

from __future__ import annotations

import signal
import socket
import sys
import threading
from contextlib import contextmanager

from lorakit.serving.engines import ServeRequest

SHUTDOWN_GRACE_S = 10.0


def bind(host: str, port: int) -> socket.socket:
    """Bind before the model loads, so a taken port fails in a second."""
    from lorakit.errors import UsageError

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as error:
        sock.close()
        raise UsageError(f"cannot listen on {host}:{port}: {error.strerror or error}", "pick another --port or stop what uses it") from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def url_for(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _server_class():
    import uvicorn

    class Server(uvicorn.Server):
        ready_line = ""
        on_stop = staticmethod(lambda: None)

        @contextmanager
        def capture_signals(self):
            if threading.current_thread() is not threading.main_thread():
                yield
                return

            def stop(signum, frame):
                if self.should_exit and signum == signal.SIGINT:
                    self.force_exit = True
                self.should_exit = True
                self.on_stop()

            previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
            try:
                yield
            finally:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)

        async def startup(self, sockets=None):
            await super().startup(sockets=sockets)
            if not self.should_exit:
                print(self.ready_line, file=sys.stderr, flush=True)

    return Server


def make_server(app, sock: socket.socket, grace: float = SHUTDOWN_GRACE_S, on_stop=lambda: None):
    import uvicorn

    config = uvicorn.Config(app, log_level="warning", access_log=False, timeout_graceful_shutdown=grace,
                            lifespan="off", server_header=False)
    server = _server_class()(config)
    host, port = sock.getsockname()[:2]
    server.ready_line = f"listening on {url_for(host, port)}"
    server.on_stop = on_stop
    return server


def serve(request: ServeRequest, sock: socket.socket | None = None) -> int:
    """Load everything, serve until SIGTERM/Ctrl-C, return the exit code (0 after a clean stop)."""
    from lorakit.output.quiet import quiet_libraries
    from lorakit.serving.app import AppState, build_app
    from lorakit.serving.runtime import open_runtime

    sock = sock or bind(request.host, request.port)
    quiet_libraries()
    runtime = open_runtime(request)
    runtime.engine.on_finished = lambda seq: runtime.release(seq.mix)
    runtime.engine.start()
    state = AppState(runtime, request.api_key, int(request.extra.get("max_body_bytes", 1 << 20)))
    grace = float(request.extra.get("shutdown_grace_s", SHUTDOWN_GRACE_S))
    server = make_server(build_app(state), sock, grace, on_stop=runtime.engine.stop_accepting)
    try:
        server.run(sockets=[sock])
    finally:
        runtime.close()
        sock.close()
    return 0
