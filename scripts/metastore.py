"""A Hive metastore in PostgreSQL for this machine (catalog 'database', docs/cluster.md), and the
one-time creation of the metastore schema in any database the job config points at.

    python scripts/metastore.py up   [--dir DIR] [--port 5439]   # make metastore-up
    python scripts/metastore.py down [--dir DIR]                 # make metastore-down
    python scripts/metastore.py init-schema --config job.yaml    # a team's own, empty database

`up` starts a private PostgreSQL server (Debian's `postgresql` package: its own data directory
DIR, default $TAGGER_HOME/metastore-pg, and port, listening on 127.0.0.1 only), creates the role
`hive` with a generated password (kept in DIR/password, mode 600) and the database `metastore`,
creates the metastore schema once, and prints the `spark:` section a job config needs. It is
idempotent: a server already up is left as it is. `down` stops the server; the data stays in DIR
(delete the folder to start from scratch).

`init-schema` runs DataNucleus' SchemaTool from the Spark jars (the Hive 2.3 metastore's own
package.jdo) against spark.metastore_db of a job config: 44 tables, seconds. The job never creates
the schema itself, because DataNucleus' autoCreateAll hangs on an empty PostgreSQL database (a
metastore connection idle in transaction holds a lock that a second connection of the same JVM
waits for). The JDBC driver jar comes from Debian's `libpostgresql-jdbc-java`.

From Python (tests): `with PostgresMetastore(directory, port) as pg: ...` starts the server and
the schema, and stops the server on exit.
"""
from __future__ import annotations

import argparse
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tagger.config from this checkout

from tagger.ops.local_services import spark_home  # noqa: E402

PG_BIN = Path(os.environ.get("TAGGER_PG_BIN", "/usr/lib/postgresql/15/bin"))
JDBC_JAR = "/usr/share/java/postgresql.jar"
ROLE, DATABASE = "hive", "metastore"
INSTALL_HINT = "apt-get install -y postgresql libpostgresql-jdbc-java"



def init_schema(url: str, user: str, password: str, driver_class: str = "org.postgresql.Driver",
                driver_jar: str = JDBC_JAR, log=print) -> None:
    """Create the Hive 2.3 metastore schema in the (empty) database at JDBC `url` with DataNucleus'
    SchemaTool and the package.jdo of the Spark jars' hive-metastore. Raises FileNotFoundError when
    the driver jar or the Spark jars are missing, RuntimeError (with SchemaTool's output) when the
    tool fails, e.g. because the schema exists already or the database refuses the login."""
    jars = spark_home() / "jars"
    metastore_jar = next(iter(sorted(jars.glob("hive-metastore-*.jar"))), None)
    if metastore_jar is None or not Path(driver_jar).is_file():
        raise FileNotFoundError(f"need {jars}/hive-metastore-*.jar (pip pyspark) and the JDBC driver {driver_jar} "
                                f"({INSTALL_HINT})")
    with tempfile.TemporaryDirectory(prefix="tagger-schematool-") as tmp:
        with zipfile.ZipFile(metastore_jar) as jar:
            jar.extract("package.jdo", tmp)
        props = Path(tmp) / "datanucleus.properties"
        props.touch(mode=0o600)
        props.write_text("\n".join([
            "javax.jdo.PersistenceManagerFactoryClass=org.datanucleus.api.jdo.JDOPersistenceManagerFactory",
            f"javax.jdo.option.ConnectionURL={url}",
            f"javax.jdo.option.ConnectionDriverName={driver_class}",
            f"javax.jdo.option.ConnectionUserName={user}",
            f"javax.jdo.option.ConnectionPassword={password}",
            "datanucleus.identifierFactory=datanucleus1",
            "datanucleus.rdbms.useLegacyNativeValueStrategy=true",
            "datanucleus.storeManagerType=rdbms",
            "datanucleus.plugin.pluginRegistryBundleCheck=LOG",
        ]) + "\n", encoding="utf-8")
        log(f"creating the metastore schema in {url} (DataNucleus SchemaTool) ...")
        done = subprocess.run(["java", "-cp", f"{jars}/*:{driver_jar}", "org.datanucleus.store.schema.SchemaTool",
                               "-create", "-api", "JDO", "-props", str(props), "package.jdo"],
                              cwd=tmp, capture_output=True, text=True)
        if done.returncode != 0 or "Exception" in done.stdout:
            raise RuntimeError(f"SchemaTool failed (exit {done.returncode}):\n{done.stdout[-3000:]}\n"
                               f"{done.stderr[-3000:]}")


class PostgresMetastore:
    """A private PostgreSQL server holding a Hive metastore: data in `directory`, on 127.0.0.1:`port`.

    start() creates the cluster on first use (initdb), starts it, creates role `hive` (password in
    directory/password) and database `metastore`, and the metastore schema once; stop() stops the
    server. Run as root, the server runs as the `postgres` user (PostgreSQL refuses root), so
    `directory` must be reachable by that user. Raises FileNotFoundError when PostgreSQL is not
    installed, RuntimeError when a step fails (with its output)."""

    def __init__(self, directory: Path, port: int = 5439):
        self.directory, self.port = Path(directory).resolve(), port
        self.data = self.directory / "data"
        self.password_file = self.directory / "password"
        self.url = f"jdbc:postgresql://127.0.0.1:{port}/{DATABASE}"

    def _as_owner(self, cmd: list) -> list[str]:
        cmd = [str(c) for c in cmd]
        return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd

    def _run(self, cmd: list, **kwargs) -> str:
        done = subprocess.run(self._as_owner(cmd), capture_output=True, text=True, **kwargs)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(map(str, cmd))} failed (exit {done.returncode}):\n{done.stdout[-2000:]}"
                               f"\n{done.stderr[-2000:]}")
        return done.stdout

    def _psql(self, sql: str, database: str = "postgres") -> str:
        return self._run([PG_BIN / "psql", "-h", self.directory, "-p", self.port, "-U", "postgres", "-d", database,
                          "-tAc", sql])

    def running(self) -> bool:
        """Whether a server answers on the port (pg_isready)."""
        done = subprocess.run([str(PG_BIN / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port)],
                              capture_output=True)
        return done.returncode == 0

    def start(self, log=print) -> "PostgresMetastore":
        """Create (first time), start and prepare the server; returns self."""
        if not (PG_BIN / "initdb").is_file():
            raise FileNotFoundError(f"PostgreSQL not found in {PG_BIN}: {INSTALL_HINT} (or set TAGGER_PG_BIN)")
        self.directory.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(self.directory, "postgres", "postgres")
        if not (self.data / "PG_VERSION").is_file():
            log(f"initdb {self.data} ...")
            self._run([PG_BIN / "initdb", "-D", self.data, "-U", "postgres", "--auth-local=trust",
                       "--auth-host=scram-sha-256", "--encoding=UTF8", "--locale=C"])
        if not self.running():
            log(f"starting PostgreSQL on 127.0.0.1:{self.port} ...")
            self._run([PG_BIN / "pg_ctl", "-D", self.data, "-l", self.directory / "server.log", "-w", "-t", "120",
                       "-o", f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1", "start"])
        if not self.password_file.is_file():
            self.password_file.touch(mode=0o600)
            self.password_file.write_text(secrets.token_urlsafe(18) + "\n", encoding="utf-8")
        password = self.password()
        if not self._psql(f"SELECT 1 FROM pg_roles WHERE rolname = '{ROLE}'").strip():
            self._psql(f"CREATE ROLE {ROLE} LOGIN PASSWORD '{password}'")
        self.add_database(DATABASE, log)
        return self

    def add_database(self, name: str, log=print) -> str:
        """Create database `name` (owner `hive`) with the metastore schema unless it exists; returns its
        JDBC URL. One server can hold several independent catalogs this way (the tests use one per
        module). Raises RuntimeError as start()."""
        if not self._psql(f"SELECT 1 FROM pg_database WHERE datname = '{name}'").strip():
            self._psql(f"CREATE DATABASE {name} OWNER {ROLE}")
        url = f"jdbc:postgresql://127.0.0.1:{self.port}/{name}"
        if not self._psql("SELECT 1 FROM pg_tables WHERE tablename = 'DBS'", name).strip():
            init_schema(url, ROLE, self.password(), log=log)
        return url

    def password(self) -> str:
        """The role's password (directory/password)."""
        return self.password_file.read_text(encoding="utf-8").strip()

    def stop(self) -> None:
        """Stop the server (fast shutdown); the data directory stays."""
        if (self.data / "postmaster.pid").is_file():
            self._run([PG_BIN / "pg_ctl", "-D", self.data, "-m", "fast", "-w", "stop"])

    def config_section(self, url: str | None = None) -> dict:
        """The `spark:` keys of a job config using this server's database at `url` (default the
        `metastore` database), the password by file."""
        return {"catalog": "database",
                "metastore_db": {"url": url or self.url, "user": ROLE, "password_file": str(self.password_file)}}

    def __enter__(self) -> "PostgresMetastore":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()




def main(argv: list[str] | None = None) -> int:
    """The command line (see the module docstring). Returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    default_dir = Path(os.environ.get("TAGGER_HOME", ".tagger")) / "metastore-pg"
    for name in ("up", "down"):
        p = sub.add_parser(name)
        p.add_argument("--dir", type=Path, default=default_dir, help=f"data folder (default {default_dir})")
        p.add_argument("--port", type=int, default=5439)
    init = sub.add_parser("init-schema", help="create the schema in the database of a job config's metastore_db")
    init.add_argument("--config", required=True, help="job YAML with spark.catalog: database")
    args = parser.parse_args(argv)
    if args.command == "init-schema":
        from tagger.config import ConfigError, load_config

        try:
            cfg = load_config(args.config)
            db = cfg.spark.metastore_db
            if db is None:
                raise ConfigError(f"{args.config}: spark.catalog is {cfg.spark.catalog!r}, not 'database'")
            init_schema(db.url, db.user, db.password(), db.driver_class, db.driver_jar)
        except (ConfigError, FileNotFoundError, RuntimeError) as exc:
            print(f"Error: {exc}", file=sys.stderr)
            return 3
        print("schema created")
        return 0
    pg = PostgresMetastore(args.dir, args.port)
    try:
        if args.command == "down":
            pg.stop()
            print(f"stopped (data kept in {pg.data})")
            return 0
        pg.start()
    except (FileNotFoundError, RuntimeError) as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 3
    import yaml

    print(f"metastore up: {pg.url}, role {ROLE}, password in {pg.password_file}. In the job config:\n")
    print(yaml.safe_dump({"spark": pg.config_section()}, sort_keys=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
