"""A small HiveServer2 client over PyHive: connect with NONE / NOSASL / LDAP / KERBEROS auth and
answer metadata questions (does a table exist, which partitions does it have).

Failures come out as three exceptions a caller (the CLI, the DAG) can act on, each with one
readable sentence instead of a Thrift traceback:
- HiveServer2Unreachable: nothing answers at host:port (down, wrong port, firewall): retry later.
- HiveServer2AuthError: something answers but the handshake or login fails (wrong auth mode,
  bad password, no Kerberos ticket): fix the settings, retrying will not help.
- HiveServer2QueryError: a statement failed on the server.
Identifiers are checked against a strict pattern before they enter SQL; values are bound by PyHive.
"""
from __future__ import annotations

import logging
import re
import socket
from dataclasses import dataclass, field

AUTH_MODES = ("NONE", "NOSASL", "LDAP", "KERBEROS")
IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

# thrift logs every failed connect attempt at ERROR level; the exceptions below say it once, clearly.
logging.getLogger("thrift").setLevel(logging.CRITICAL)


class HiveServer2Error(RuntimeError):
    """A HiveServer2 call failed; the message says what to check."""


class HiveServer2Unreachable(HiveServer2Error):
    """Nothing accepts connections at the configured host and port (retry later or fix the address)."""


class HiveServer2AuthError(HiveServer2Error):
    """The server answered but the session could not be opened with the configured auth."""


class HiveServer2QueryError(HiveServer2Error):
    """A statement failed on the server."""


@dataclass(frozen=True)
class HiveServer2Settings:
    """Where and how to reach HiveServer2: host, port, username, auth (one of AUTH_MODES), password
    (LDAP only), kerberos_service_name (KERBEROS only), the session's database, and the socket
    timeout in seconds for connect, handshake and each statement."""
    host: str
    port: int = 10000
    username: str = "etl"
    auth: str = "NONE"
    password: str | None = field(default=None, repr=False)  # LDAP only; never logged
    kerberos_service_name: str | None = None  # KERBEROS only
    database: str = "default"
    timeout_seconds: float = 30.0

    @property
    def endpoint(self) -> str:
        """'host:port (auth MODE, user NAME)' for messages; never the password."""
        return f"{self.host}:{self.port} (auth {self.auth}, user {self.username})"


def _identifier(name: str) -> str:
    if not IDENTIFIER.match(name):
        raise ValueError(f"'{name}' is not a plain SQL identifier (letters, digits, _)")
    return f"`{name}`"


def _split_table(table: str) -> tuple[str, str]:
    db, _, name = table.partition(".")
    _identifier(db), _identifier(name)
    return db, name


def _transport(s: HiveServer2Settings):
    """The Thrift transport PyHive would build, plus a socket timeout so that a silent port or a
    stuck handshake fails after `timeout_seconds` instead of hanging the scheduler's slot."""
    from thrift.transport import TSocket, TTransport

    sock = TSocket.TSocket(s.host, s.port)
    sock.setTimeout(int(s.timeout_seconds * 1000))
    if s.auth == "NOSASL":
        return TTransport.TBufferedTransport(sock)
    import thrift_sasl
    from pyhive.hive import get_installed_sasl

    if s.auth == "KERBEROS":
        mechanism, password = "GSSAPI", None
    else:  # NONE and LDAP both use SASL PLAIN; with NONE the server ignores the password
        mechanism, password = "PLAIN", s.password if s.auth == "LDAP" else "x"

    def sasl_client():
        return get_installed_sasl(host=s.host, sasl_auth=mechanism, service=s.kerberos_service_name,
                                  username=s.username, password=password)

    return thrift_sasl.TSaslClientTransport(sasl_client, mechanism, sock)


def _check_kerberos_support() -> None:
    try:
        import kerberos  # noqa: F401  (pure-sasl's GSSAPI mechanism needs it)
    except ImportError:
        try:
            import sasl  # noqa: F401  (or the C sasl binding with a GSSAPI plugin)
        except ImportError:
            raise HiveServer2AuthError(
                "auth KERBEROS needs the 'kerberos' Python package (pip install kerberos; it needs the MIT "
                "Kerberos headers) and a valid ticket (kinit -kt <keytab> <principal>). Neither 'kerberos' nor "
                "'sasl' is installed here.") from None


class HiveClient:
    """One open HiveServer2 session. Use as a context manager: `with HiveClient.connect(s) as hs2:`."""

    def __init__(self, settings: HiveServer2Settings, connection):
        self.settings, self._conn = settings, connection

    @classmethod
    def connect(cls, settings: HiveServer2Settings) -> "HiveClient":
        """Open a session with `settings` (a TCP probe first, then the Thrift/SASL handshake).
        Raises HiveServer2Unreachable when nothing answers at host:port within timeout_seconds;
        HiveServer2AuthError for an unknown auth mode, LDAP without a password, KERBEROS without a
        service name or support, or a failed/timed-out handshake or refused session; ValueError when
        settings.database is not a plain identifier."""
        from pyhive import hive
        from thrift.transport.TTransport import TTransportException

        s = settings
        if s.auth not in AUTH_MODES:
            raise HiveServer2AuthError(f"auth '{s.auth}' is not one of {', '.join(AUTH_MODES)}")
        if s.auth == "LDAP" and not s.password:
            raise HiveServer2AuthError("auth LDAP needs a password and none was given")
        if s.auth == "KERBEROS":
            if not s.kerberos_service_name:
                raise HiveServer2AuthError("auth KERBEROS needs kerberos_service_name (usually 'hive')")
            _check_kerberos_support()
        _identifier(s.database)
        where = f"HiveServer2 at {s.endpoint}"
        # Reachability first: a refused or silent port is an infrastructure problem (retry), a failed
        # handshake on an open port is a settings problem (do not retry).
        try:
            socket.create_connection((s.host, s.port), timeout=s.timeout_seconds).close()
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
            if isinstance(exc, socket.timeout):
                reason = f"no answer within {s.timeout_seconds:g}s"
            raise HiveServer2Unreachable(
                f"Cannot connect to {where}: {reason}. Check host and port (hive.server2.thrift.port) and that "
                f"HiveServer2 is running and reachable from this machine.") from None
        try:
            conn = hive.connect(thrift_transport=_transport(s), username=s.username, database=s.database)
        except TTransportException as exc:
            raise HiveServer2AuthError(
                f"{where} accepted the connection but the session could not be opened: {exc}. Check that "
                f"auth {s.auth} matches the server's hive.server2.authentication (NOSASL needs NOSASL, NONE/LDAP "
                f"use SASL PLAIN, KERBEROS uses GSSAPI) and the credentials.") from None
        except (socket.timeout, TimeoutError):
            raise HiveServer2AuthError(
                f"{where} accepted the connection but did not complete the handshake within "
                f"{s.timeout_seconds:g}s. Check that auth {s.auth} matches the server's "
                f"hive.server2.authentication and whether the port speaks HiveServer2 binary mode.") from None
        except Exception as exc:  # pyhive.exc.OperationalError: OpenSession or USE <database> rejected
            raise HiveServer2AuthError(f"{where} refused the session: {_first_line(exc)}") from None
        return cls(settings, conn)

    def __enter__(self) -> "HiveClient":
        """This client (the session is already open)."""
        return self

    def __exit__(self, *exc) -> None:
        """Close the session; an exception from the block propagates."""
        self.close()

    def close(self) -> None:
        """Close the session; errors while closing are swallowed (a broken session may not close)."""
        try:
            self._conn.close()
        except Exception:  # closing a broken session must not hide the error that broke it
            pass

    def query(self, sql: str, parameters: dict | None = None) -> list[tuple]:
        """All result rows of `sql` as tuples, `parameters` bound by PyHive (%(name)s markers).
        Raises HiveServer2QueryError when the statement fails or gets no answer within
        settings.timeout_seconds."""
        cursor = self._conn.cursor()
        try:
            cursor.execute(sql, parameters)
            return cursor.fetchall()
        except (socket.timeout, TimeoutError):
            raise HiveServer2QueryError(f"'{sql}' got no answer within {self.settings.timeout_seconds:g}s "
                                        f"from HiveServer2 at {self.settings.endpoint}") from None
        except Exception as exc:
            raise HiveServer2QueryError(f"'{sql}' failed on HiveServer2 at {self.settings.endpoint}: "
                                        f"{_first_line(exc)}") from None
        finally:
            try:
                cursor.close()
            except Exception:
                pass

    def database_exists(self, db: str) -> bool:
        """Whether database `db` exists (case-insensitive). ValueError if `db` is not a plain
        identifier; HiveServer2QueryError if the server query fails."""
        _identifier(db)
        rows = self.query("SHOW DATABASES LIKE %(db)s", {"db": db})
        return any(db.lower() == str(v).lower() for row in rows for v in row)

    def table_exists(self, table: str) -> bool:
        """Whether `table` (db.table) exists, its database included (case-insensitive). ValueError if
        either part is not a plain identifier; HiveServer2QueryError if a server query fails."""
        db, name = _split_table(table)
        if not self.database_exists(db):
            return False
        rows = self.query(f"SHOW TABLES IN {_identifier(db)} LIKE %(name)s", {"name": name})
        # Hive answers (tab_name); Spark answers (namespace, tableName, isTemporary).
        return any(name.lower() == str(v).lower() for row in rows for v in row)

    def partitions(self, table: str) -> list[str]:
        """Partition specs such as 'pt=2024-01-05' (metadata only: no data is read)."""
        db, name = _split_table(table)
        return [row[0] for row in self.query(f"SHOW PARTITIONS {_identifier(db)}.{_identifier(name)}")]

    def count_rows(self, table: str, column: str, value: str) -> int:
        """The number of rows of `table` (db.table) where `column` = `value` (a full count on the
        server, e.g. one partition). ValueError for a non-identifier table or column name;
        HiveServer2QueryError if the query fails or times out."""
        db, name = _split_table(table)
        rows = self.query(f"SELECT count(*) FROM {_identifier(db)}.{_identifier(name)} "
                          f"WHERE {_identifier(column)} = %(value)s", {"value": value})
        return int(rows[0][0])


def _first_line(exc: Exception) -> str:
    """The server's message without the Java stack trace PyHive embeds in its exceptions."""
    text = str(exc)
    match = re.search(r"errorMessage=['\"](.*?)['\"][,)]", text, re.DOTALL)
    if match:
        text = match.group(1)
    else:
        match = re.search(r"infoMessages=\[['\"]\*?([^'\"]*)", text)
        text = match.group(1) if match else text
    text = text.replace("org.apache.hive.service.cli.HiveSQLException:", "").strip()
    return text.splitlines()[0][:500] if text else type(exc).__name__
