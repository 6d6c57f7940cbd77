//! Real `cairn` processes on loopback, driven with etcd's own `etcdctl` (etcd-client, installed
//! by `.ci/run`).

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub struct Member {
    pub name: String,
    pub client: u16,
    pub peer: u16,
    pub child: Option<Child>,
    /// Flags added to this member's command line.
    pub args: Vec<String>,
    /// The open-files limit (`ulimit -n`) the member runs under, if not the test's own.
    pub fd_limit: Option<u32>,
    /// The `--initial-cluster` it starts with, if not the cluster's first one (a member that
    /// joins later gets the one `etcdctl member add` printed).
    pub initial_cluster: Option<String>,
}

pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub members: Vec<Member>,
    initial_cluster: String,
}

fn free_port() -> u16 {
    crate::ports::free_port()
}

pub fn etcdctl_available() -> bool {
    Command::new("etcdctl").arg("version").env("ETCDCTL_API", "3").output().is_ok_and(|o| o.status.success())
}

impl Cluster {
    pub fn start(n: usize) -> Cluster {
        Cluster::start_with(&vec![Vec::new(); n])
    }

    /// One member per entry, each started with the flags given for it.
    pub fn start_with(args: &[Vec<String>]) -> Cluster {
        let mut c = Cluster::prepare(args);
        for i in 0..args.len() {
            c.start_member(i);
        }
        c.wait_healthy();
        c
    }

    /// Members with their ports and data dirs chosen, none started.
    pub fn prepare(args: &[Vec<String>]) -> Cluster {
        let n = args.len();
        assert!(etcdctl_available(), "etcdctl is missing: apt-get install -y etcd-client (.ci/run does)");
        let dir = tempfile::tempdir().expect("temp dir");
        let members: Vec<Member> = (1..=n)
            .map(|i| Member {
                name: format!("m{i}"),
                client: free_port(),
                peer: free_port(),
                child: None,
                args: args[i - 1].clone(),
                fd_limit: None,
                initial_cluster: None,
            })
            .collect();
        let initial_cluster = members
            .iter()
            .map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.peer))
            .collect::<Vec<_>>()
            .join(",");
        Cluster { dir, members, initial_cluster }
    }

    /// The `--initial-cluster` the members start with.
    pub fn initial_cluster(&self) -> &str {
        &self.initial_cluster
    }

    pub fn data_dir(&self, i: usize) -> PathBuf {
        self.dir.path().join(&self.members[i].name)
    }

    pub fn start_member(&mut self, i: usize) {
        let m = &self.members[i];
        let log = std::fs::File::create(self.dir.path().join(format!("{}.log", m.name))).expect("log file");
        let mut cmd = match m.fd_limit {
            None => Command::new(env!("CARGO_BIN_EXE_cairn")),
            Some(n) => {
                let mut sh = Command::new("sh");
                sh.args(["-c", &format!("ulimit -n {n} && exec \"$0\" \"$@\""), env!("CARGO_BIN_EXE_cairn")]);
                sh
            }
        };
        let child = cmd
            .args(["--name", &m.name])
            .arg("--data-dir")
            .arg(self.data_dir(i))
            .args(["--listen-client-urls", &format!("http://127.0.0.1:{}", m.client)])
            .args(["--advertise-client-urls", &format!("http://127.0.0.1:{}", m.client)])
            .args(["--listen-peer-urls", &format!("http://127.0.0.1:{}", m.peer)])
            .args(["--initial-advertise-peer-urls", &format!("http://127.0.0.1:{}", m.peer)])
            .args(["--initial-cluster", m.initial_cluster.as_deref().unwrap_or(&self.initial_cluster)])
            .args(&m.args)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start cairn");
        self.members[i].child = Some(child);
    }

    /// A member to add later, with its ports chosen now (not started); its index.
    pub fn reserve_member(&mut self, name: &str) -> usize {
        self.members.push(Member {
            name: name.to_string(),
            client: free_port(),
            peer: free_port(),
            child: None,
            args: vec![],
            fd_limit: None,
            initial_cluster: None,
        });
        self.members.len() - 1
    }

    /// Whether member `i`'s process has exited, and how (None while it runs).
    pub fn exited(&mut self, i: usize) -> Option<std::process::ExitStatus> {
        self.members[i].child.as_mut().and_then(|c| c.try_wait().ok().flatten())
    }

    pub fn log(&self, i: usize) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("{}.log", self.members[i].name)))
            .unwrap_or_default()
    }

    /// kill -9: no shutdown, no flush.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.members[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn endpoints(&self) -> String {
        self.members
            .iter()
            .filter(|m| m.child.is_some())
            .map(|m| format!("127.0.0.1:{}", m.client))
            .collect::<Vec<_>>()
            .join(",")
    }

    pub fn endpoint(&self, i: usize) -> String {
        format!("127.0.0.1:{}", self.members[i].client)
    }

    /// Runs etcdctl against every live member.
    pub fn ctl(&self, args: &[&str]) -> Output {
        self.ctl_at(&self.endpoints(), args, None)
    }

    pub fn ctl_at(&self, endpoints: &str, args: &[&str], stdin: Option<&str>) -> Output {
        // A hard limit too: some etcdctl commands (keep-alive) ignore --command-timeout, and a
        // test must fail, not hang.
        let mut cmd = Command::new("timeout");
        cmd.args(["60", "etcdctl"]);
        cmd.env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={endpoints}"))
            .arg("--command-timeout=10s")
            .args(args);
        if let Some(input) = stdin {
            use std::io::Write;
            let mut child =
                cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
            child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
            return child.wait_with_output().unwrap();
        }
        cmd.output().expect("run etcdctl")
    }

    /// etcdctl that must succeed; returns its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.ctl(args);
        assert!(
            out.status.success(),
            "etcdctl {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// etcdctl that must fail; returns its stderr.
    pub fn err(&self, args: &[&str]) -> String {
        let out = self.ctl(args);
        assert!(
            !out.status.success(),
            "etcdctl {args:?} succeeded: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    pub fn wait_healthy(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let out = self.ctl(&["endpoint", "health"]);
            if out.status.success() {
                // A write through the cluster proves a leader and a quorum.
                if self.ctl(&["put", "__ready", "1"]).status.success() {
                    return;
                }
            }
            if Instant::now() > deadline {
                panic!("cluster not healthy after 30 s: {}", self.logs());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    pub fn logs(&self) -> String {
        let mut s = String::new();
        for m in &self.members {
            let p = self.dir.path().join(format!("{}.log", m.name));
            s += &format!("--- {}\n{}\n", m.name, std::fs::read_to_string(p).unwrap_or_default());
        }
        s
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.kill(i);
        }
    }
}
