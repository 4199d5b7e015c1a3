//! PostgreSQL servers of the test binary's own, for TLS: one `initdb`, then
//! a copy of the data directory per server, each on a free port of
//! 127.0.0.1 with its own certificate (from the test CA of `pki`):
//!
//! - [`Variant::TlsOnly`]: a certificate for `localhost` and 127.0.0.1
//!   signed by [`Pki::ca`]; `pg_hba.conf` has `hostssl` lines only, and the
//!   role `certuser` must log in with a client certificate (`cert`).
//! - [`Variant::Expired`]: the same, with a certificate that expired.
//! - [`Variant::WrongHost`]: a certificate for `db.example.com` only.
//! - [`Variant::Plaintext`]: `ssl = off`.
//!
//! They start once, on first use, and stop when the test process ends: a
//! watchdog shell (as the `postgres` user, since PostgreSQL refuses to run
//! as root) waits for the test process to go, stops them and removes the
//! directory. Each test works in a schema of its own, so tests run in
//! parallel on the shared servers. Without `initdb` the tests are skipped
//! loudly, or fail under `CI=true` (see `skip`).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::pki::{PemPair, TestCa, Validity, write_private};
use super::skip;

/// Where Debian puts each PostgreSQL version's server programs
/// (`/usr/lib/postgresql/<version>/bin`); the newest one with `initdb` is
/// used, or the directory `SESSIOND_TEST_PG_BIN` names.
const DEBIAN_VERSIONS: &str = "/usr/lib/postgresql";

/// The directory of `initdb`, `postgres` and `pg_isready`, if any.
fn server_programs() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("SESSIOND_TEST_PG_BIN") {
        return Some(PathBuf::from(dir));
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir(DEBIAN_VERSIONS)
        .ok()?
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let version = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

/// [`server_programs`], found once.
fn bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| server_programs().unwrap_or_default())
}

/// How long a server may take to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// The role that must present a client certificate (its common name).
pub const CERT_USER: &str = "certuser";

/// The certificates, as PEM files.
pub struct Pki {
    /// The CA that signed every server certificate and the client's.
    pub ca: PathBuf,
    /// A CA that signed nothing here.
    pub other_ca: PathBuf,
    /// The client certificate of [`CERT_USER`], and its key (mode 0600).
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    TlsOnly,
    Expired,
    WrongHost,
    Plaintext,
}

const VARIANTS: [Variant; 4] = [
    Variant::TlsOnly,
    Variant::Expired,
    Variant::WrongHost,
    Variant::Plaintext,
];

impl Variant {
    fn dir_name(self) -> &'static str {
        match self {
            Self::TlsOnly => "tls-only",
            Self::Expired => "expired",
            Self::WrongHost => "wrong-host",
            Self::Plaintext => "plaintext",
        }
    }
}

/// The running servers.
pub struct Servers {
    pub pki: Pki,
    ports: Vec<(Variant, u16)>,
}

impl Servers {
    /// The port of a server.
    pub fn port(&self, variant: Variant) -> u16 {
        self.ports
            .iter()
            .find(|(v, _)| *v == variant)
            .map(|(_, port)| *port)
            .unwrap()
    }

    /// A store URL for `variant` through `host`, in a schema of its own,
    /// with `options` (`sslmode=…&…`, may be empty).
    pub fn url(&self, variant: Variant, host: &str, options: &str) -> String {
        self.url_as("postgres", variant, host, options)
    }

    /// The same, logging in as `user`.
    pub fn url_as(&self, user: &str, variant: Variant, host: &str, options: &str) -> String {
        use rand::RngExt;
        let suffix: u64 = rand::rng().random();
        let port = self.port(variant);
        let mut url = format!("postgres://{user}@{host}:{port}/postgres?schema=tls_{suffix:016x}");
        if !options.is_empty() {
            url.push('&');
            url.push_str(options);
        }
        url
    }
}

/// The servers, started on the first call; `None` (after a loud skip, or a
/// failure under `CI=true`) when PostgreSQL's programs are not installed.
pub fn servers() -> Option<&'static Servers> {
    static SERVERS: OnceLock<Option<Servers>> = OnceLock::new();
    let servers = SERVERS.get_or_init(|| {
        if !bin().join("initdb").exists() {
            return None;
        }
        Some(start())
    });
    if servers.is_none() {
        skip::skip_or_fail(&format!(
            "PostgreSQL's server programs (initdb) are not installed under \
             {DEBIAN_VERSIONS}/<version>/bin (apt-get install postgresql), nor named by \
             SESSIOND_TEST_PG_BIN"
        ));
    }
    servers.as_ref()
}

fn start() -> Servers {
    let root = tempfile::Builder::new()
        .prefix("sessiond-pg-tls-")
        .tempdir()
        .unwrap()
        // Removed by the watchdog once the servers have stopped.
        .keep();
    let made = make_certificates(&root);
    let template = root.join("template");
    run_as_postgres(
        &root,
        Command::new(bin().join("initdb"))
            .args([
                "--no-sync",
                "--no-instructions",
                "-A",
                "trust",
                "-U",
                "postgres",
                "-D",
            ])
            .arg(&template),
    );
    // The role of the client-certificate tests, made in single-user mode so
    // that no server needs to run for it.
    let mut single = Command::new("runuser");
    single
        .args(["-u", "postgres", "--"])
        .arg(bin().join("postgres"))
        .args(["--single", "-D"])
        .arg(&template)
        .arg("postgres")
        .stdin(Stdio::piped())
        .stdout(Stdio::null());
    let mut child = single.spawn().unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        writeln!(stdin, "CREATE ROLE {CERT_USER} LOGIN SUPERUSER;").unwrap();
    }
    assert!(child.wait().unwrap().success(), "postgres --single failed");

    let mut ports = Vec::new();
    for variant in VARIANTS {
        let data = root.join(variant.dir_name());
        let status = Command::new("cp")
            .arg("-a")
            .arg(&template)
            .arg(&data)
            .status()
            .unwrap();
        assert!(status.success());
        let port = free_port();
        configure(&data, variant, port, &made);
        ports.push((variant, port));
    }
    chown_to_postgres(&root);
    spawn_watchdog(&root, &ports);
    for (variant, port) in &ports {
        wait_until_ready(*variant, *port);
    }
    Servers {
        pki: made.pki,
        ports,
    }
}

/// What `make_certificates` writes: the client's files, and each server's
/// certificate and key as PEM text.
struct Made {
    pki: Pki,
    ca_pem: String,
    servers: Vec<(Variant, PemPair)>,
}

fn make_certificates(dir: &Path) -> Made {
    let ca = TestCa::new("sessiond test CA");
    let other_ca = TestCa::new("a CA that signed nothing here");
    let local = ["localhost", "127.0.0.1"];
    let client = ca.client_cert(CERT_USER).write(dir, "client");
    Made {
        pki: Pki {
            ca: ca.write_ca(dir, "ca.pem"),
            other_ca: other_ca.write_ca(dir, "other-ca.pem"),
            client_cert: client.cert,
            client_key: client.key,
        },
        ca_pem: ca.ca_pem(),
        servers: vec![
            (Variant::TlsOnly, ca.server_cert(&local, Validity::Current)),
            (Variant::Expired, ca.server_cert(&local, Validity::Expired)),
            (
                Variant::WrongHost,
                ca.server_cert(&["db.example.com"], Validity::Current),
            ),
        ],
    }
}

/// The server's settings: only TCP on 127.0.0.1, TLS with its certificate
/// and who must use it, and no durability (test data).
fn configure(data: &Path, variant: Variant, port: u16, made: &Made) {
    let mut conf = format!(
        "\nlisten_addresses = '127.0.0.1'\nport = {port}\nunix_socket_directories = ''\n\
         fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n\
         shared_buffers = 16MB\nmax_connections = 200\n"
    );
    let hba = match made.servers.iter().find(|(v, _)| *v == variant) {
        Some((_, pair)) => {
            std::fs::write(data.join("server.crt"), &pair.cert).unwrap();
            write_private(data, "server.key", &pair.key);
            std::fs::write(data.join("root.crt"), &made.ca_pem).unwrap();
            conf.push_str(
                "ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n\
                 ssl_ca_file = 'root.crt'\n",
            );
            format!(
                "hostssl all {CERT_USER} 127.0.0.1/32 cert\n\
                 hostssl all all 127.0.0.1/32 trust\n"
            )
        }
        None => {
            conf.push_str("ssl = off\n");
            "host all all 127.0.0.1/32 trust\n".to_owned()
        }
    };
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(data.join("postgresql.conf"))
        .unwrap();
    std::io::Write::write_all(&mut file, conf.as_bytes()).unwrap();
    std::fs::write(data.join("pg_hba.conf"), hba).unwrap();
}

/// A port nothing listens on now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn chown_to_postgres(path: &Path) {
    let status = Command::new("chown")
        .args(["-R", "postgres:postgres"])
        .arg(path)
        .status()
        .unwrap();
    assert!(status.success(), "chown postgres {}", path.display());
}

fn run_as_postgres(root: &Path, command: &mut Command) {
    chown_to_postgres(root);
    let program = command.get_program().to_owned();
    let args: Vec<_> = command.get_args().map(ToOwned::to_owned).collect();
    let output = Command::new("runuser")
        .args(["-u", "postgres", "--"])
        .arg(program)
        .args(args)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Starts the servers under a shell that stops them (fast shutdown) and
/// removes `root` once the test process has exited.
fn spawn_watchdog(root: &Path, ports: &[(Variant, u16)]) {
    let mut script = String::from("pids=''\n");
    for (variant, _) in ports {
        script.push_str(&format!(
            "'{}/postgres' -D '{}' >'{}.log' 2>&1 & pids=\"$pids $!\"\n",
            bin().display(),
            root.join(variant.dir_name()).display(),
            root.join(variant.dir_name()).display(),
        ));
    }
    script.push_str(&format!(
        "while [ -d /proc/{test} ]; do sleep 0.2; done\n\
         kill -INT $pids; wait; rm -rf '{root}'\n",
        test = std::process::id(),
        root = root.display(),
    ));
    let mut watchdog = Command::new("runuser")
        .args(["-u", "postgres", "--", "sh", "-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // It outlives every test; a thread reaps it should it end sooner.
    std::thread::spawn(move || watchdog.wait());
}

fn wait_until_ready(variant: Variant, port: u16) {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        let ready = Command::new(bin().join("pg_isready"))
            .args(["-q", "-h", "127.0.0.1", "-p", &port.to_string()])
            .status()
            .is_ok_and(|status| status.success());
        if ready {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the {variant:?} PostgreSQL on port {port} did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
