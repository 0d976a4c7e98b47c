"""A PostgreSQL server on loopback that asks for a password and rejects it, as a real server does.

The local test server trusts every connection, so it can never show what
happens when a password is refused. This one speaks just enough of the
frontend/backend protocol (v3) for libpq: it declines SSL and GSS
encryption, reads the startup message, asks for a cleartext or an MD5
password, records the password message the client sends, and answers with
the ErrorResponse a real server sends (SQLSTATE 28P01, "password
authentication failed for user ..."). psycopg2 then raises the very
``OperationalError`` it raises against a real server.
"""

import hashlib
import secrets
import socket
import struct
import threading

_SSL_REQUEST = 80877103
_GSSENC_REQUEST = 80877104
_CANCEL_REQUEST = 80877102
_PROTOCOL_3 = 196608
_AUTH_CLEARTEXT = 3
_AUTH_MD5 = 5


def md5_password_message(user: str, password: str, salt: bytes) -> bytes:
    """What libpq sends for an MD5 challenge: ``md5`` + md5(md5(password + user) + salt)."""
    inner = hashlib.md5(password.encode() + user.encode()).hexdigest().encode()
    return b"md5" + hashlib.md5(inner + salt).hexdigest().encode()


class FakePostgres:
    """Accept connections on 127.0.0.1:<port>, ask each for a password and reject it.

    Parameters
    ----------
    auth : {"cleartext", "md5"}
        Which password the server asks for.

    Attributes
    ----------
    attempts : list of dict
        One per connection that reached authentication: ``user``, ``database``,
        ``salt`` (MD5 only) and ``password_message`` (the bytes the client sent).
    """

    def __init__(self, auth: str = "cleartext"):
        if auth not in ("cleartext", "md5"):
            raise ValueError(f"unknown auth {auth!r}")
        self.auth = auth
        self.attempts: list[dict] = []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.05)
        self.port = self.listener.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def __enter__(self) -> "FakePostgres":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.listener.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _address = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    @staticmethod
    def _read_exactly(sock: socket.socket, size: int) -> bytes:
        data = b""
        while len(data) < size:
            piece = sock.recv(size - len(data))
            if not piece:
                raise ConnectionError("client went away")
            data += piece
        return data

    def _serve(self, sock: socket.socket) -> None:
        sock.settimeout(10)
        try:
            with sock:
                while True:  # SSLRequest / GSSENCRequest come first; decline them, then the startup message
                    length, code = struct.unpack("!II", self._read_exactly(sock, 8))
                    body = self._read_exactly(sock, length - 8)
                    if code in (_SSL_REQUEST, _GSSENC_REQUEST):
                        sock.sendall(b"N")
                        continue
                    if code == _CANCEL_REQUEST:
                        return
                    if code != _PROTOCOL_3:
                        return
                    break
                fields = body.rstrip(b"\0").split(b"\0")
                params = dict(zip(fields[0::2], fields[1::2]))
                user = params.get(b"user", b"").decode()
                attempt = {"user": user, "database": params.get(b"database", b"").decode()}
                if self.auth == "md5":
                    attempt["salt"] = secrets.token_bytes(4)
                    sock.sendall(b"R" + struct.pack("!II", 12, _AUTH_MD5) + attempt["salt"])
                else:
                    sock.sendall(b"R" + struct.pack("!II", 8, _AUTH_CLEARTEXT))
                kind = self._read_exactly(sock, 1)
                (length,) = struct.unpack("!I", self._read_exactly(sock, 4))
                message = self._read_exactly(sock, length - 4)
                if kind != b"p":
                    return
                attempt["password_message"] = message.rstrip(b"\0")
                self.attempts.append(attempt)
                text = f'password authentication failed for user "{user}"'
                error = b"".join(tag + value.encode() + b"\0" for tag, value in (
                    (b"S", "FATAL"), (b"V", "FATAL"), (b"C", "28P01"), (b"M", text),
                    (b"F", "auth.c"), (b"L", "326"), (b"R", "auth_failed"))) + b"\0"
                sock.sendall(b"E" + struct.pack("!I", len(error) + 4) + error)
        except (ConnectionError, OSError, struct.error):
            return

    def received_password(self, user: str, password: str) -> bool:
        """Whether some client sent ``password`` for ``user`` (so it really was offered, and refused)."""
        for attempt in self.attempts:
            if self.auth == "md5":
                expected = md5_password_message(user, password, attempt["salt"])
            else:
                expected = password.encode()
            if attempt["user"] == user and attempt["password_message"] == expected:
                return True
        return False
