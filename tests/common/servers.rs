//! A Postgres or Redis server of a test's own, on loopback, that the test may stop, restart or
//! fill up without disturbing the shared servers the other tests use.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::migrate;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// As root, Postgres runs as the `postgres` user (as scripts/services.sh does).
fn as_postgres(program: &PathBuf) -> Command {
    let root = Command::new("id").arg("-u").output().map(|o| o.stdout.starts_with(b"0")).unwrap_or(false);
    if root {
        let mut cmd = Command::new("runuser");
        cmd.arg("-u").arg("postgres").arg("--").arg(program);
        cmd
    } else {
        Command::new(program)
    }
}

pub struct OwnPostgres {
    bin: PathBuf,
    dir: PathBuf,
    pub port: u16,
    options: String,
}

impl OwnPostgres {
    /// A fresh cluster with the database `jobs`, migrated; `options` go to the server (`-c ...`).
    pub async fn start(options: &str) -> OwnPostgres {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .unwrap()
            .map(|e| e.unwrap().path().join("bin"))
            .max()
            .unwrap();
        let dir = std::env::temp_dir().join(format!("wt-pg-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        Command::new("chmod").arg("777").arg(&dir).status().unwrap();
        let data = dir.join("data");
        let ok = as_postgres(&bin.join("initdb"))
            .args(["-D", data.to_str().unwrap(), "-U", "postgres", "--auth=trust", "-E", "UTF8"])
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(ok.success(), "initdb");
        let pg = OwnPostgres { bin, dir, port: free_port(), options: options.to_owned() };
        pg.start_again();
        let admin = super::connect(&pg.url("postgres")).await;
        admin.batch_execute("CREATE DATABASE jobs").await.unwrap();
        migrate(&pg.url("jobs")).await;
        pg
    }

    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    fn ctl(&self, args: &[&str]) {
        let data = self.dir.join("data");
        let ok = as_postgres(&self.bin.join("pg_ctl"))
            .args(["-D", data.to_str().unwrap(), "-w", "-l", self.dir.join("log").to_str().unwrap()])
            .args(args)
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(ok.success(), "pg_ctl {args:?}");
    }

    pub fn start_again(&self) {
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -k {} -c fsync=off {}",
            self.port,
            self.dir.display(),
            self.options
        );
        self.ctl(&["-o", &options, "start"]);
    }

    /// `pg_ctl restart -m fast`: every session is cut, the server is back a moment later.
    pub fn restart(&self) {
        self.ctl(&["-m", "fast", "stop"]);
        self.start_again();
    }
}

impl Drop for OwnPostgres {
    fn drop(&mut self) {
        let data = self.dir.join("data");
        let _ = as_postgres(&self.bin.join("pg_ctl"))
            .args(["-D", data.to_str().unwrap(), "-m", "immediate", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub struct OwnRedis {
    child: Option<Child>,
    pub port: u16,
}

impl OwnRedis {
    pub fn start() -> OwnRedis {
        let mut redis = OwnRedis { child: None, port: free_port() };
        redis.start_again();
        redis
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn start_again(&mut self) {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(started.elapsed() < Duration::from_secs(10), "redis did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The server goes away (`kill -9`), and with it every key: no persistence, as in the tests.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Debian's PgBouncer on loopback in front of the suite's Postgres (`target` is its
/// `host:port`), in `pool_mode` `transaction` or `session`, with `pool_size` server connections
/// per database and user; stopped when dropped.
pub struct OwnPgBouncer {
    child: Child,
    dir: PathBuf,
    pub port: u16,
}

impl OwnPgBouncer {
    pub fn start(target: &str, pool_mode: &str, pool_size: u32) -> OwnPgBouncer {
        let (host, port) = target.rsplit_once(':').expect("host:port");
        let dir = std::env::temp_dir().join(format!("wt-pgbouncer-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        Command::new("chmod").arg("777").arg(&dir).status().unwrap();
        let listen = free_port();
        std::fs::write(dir.join("users.txt"), "\"postgres\" \"\"\n").unwrap();
        let config = format!(
            "[databases]\n* = host={host} port={port}\n\n[pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = {listen}\n\
             unix_socket_dir =\nauth_type = trust\nauth_file = {users}\npool_mode = {pool_mode}\n\
             default_pool_size = {pool_size}\nmax_client_conn = 500\nlogfile = {log}\n\
             ignore_startup_parameters = extra_float_digits,options\n",
            users = dir.join("users.txt").display(),
            log = dir.join("pgbouncer.log").display(),
        );
        std::fs::write(dir.join("pgbouncer.ini"), config).unwrap();
        // PgBouncer refuses to run as root.
        let child = as_postgres(&PathBuf::from("/usr/sbin/pgbouncer"))
            .arg(dir.join("pgbouncer.ini"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("pgbouncer (scripts/test.sh installs Debian's package)");
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", listen)).is_err() {
            assert!(started.elapsed() < Duration::from_secs(10), "pgbouncer did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        OwnPgBouncer { child, dir, port: listen }
    }

    /// `url` (a database of the suite's Postgres) through this pooler.
    pub fn url_for(&self, url: &str) -> String {
        url.replace(&super::postgres_address(url), &format!("127.0.0.1:{}", self.port))
    }
}

impl Drop for OwnPgBouncer {
    fn drop(&mut self) {
        // As root the child is `runuser`; PgBouncer is its child, stopped by name and port.
        let _ = Command::new("pkill").arg("-f").arg(self.dir.join("pgbouncer.ini")).status();
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
