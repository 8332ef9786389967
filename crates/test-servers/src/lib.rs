//! Real `etcd` and `nats-server` processes on 127.0.0.1 for tests (Debian packages
//! `etcd-server` and `nats-server`; `scripts/test.sh` installs them).
//!
//! Each server gets free ports of its own and a scratch data folder, is killed when dropped,
//! and can be stopped and restarted on the same ports (for "the server restarted under load"
//! tests). Start-up waits until the client port accepts connections, bounded by
//! [`START_TIMEOUT`].

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a server may take to accept connections.
pub const START_TIMEOUT: Duration = Duration::from_secs(20);

/// A port nobody listens on right now (the kernel's pick; released before use, so a race is
/// possible but rare on a test machine, and start-up fails loudly if it happens).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free loopback port")
}

fn wait_for_port(port: u16, child: &mut Child, what: &str) -> Result<(), String> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let start = Instant::now();
    loop {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("{what} exited during start-up: {status}"));
        }
        if start.elapsed() > START_TIMEOUT {
            return Err(format!(
                "{what} did not listen on {addr} within {START_TIMEOUT:?}"
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn which(program: &str) -> Result<PathBuf, String> {
    for dir in ["/usr/bin", "/usr/sbin", "/usr/local/bin", "/usr/local/sbin"] {
        let path = PathBuf::from(dir).join(program);
        if path.exists() {
            return Ok(path);
        }
    }
    Err(format!(
        "{program} not found: install the Debian package (scripts/test.sh does)"
    ))
}

fn kill(child: &mut Option<Child>) {
    if let Some(mut c) = child.take() {
        let _ = c.kill();
        let _ = c.wait();
    }
}

/// A single-member etcd cluster.
pub struct EtcdServer {
    client_port: u16,
    peer_port: u16,
    data: tempfile::TempDir,
    child: Option<Child>,
}

impl EtcdServer {
    pub fn start() -> Result<Self, String> {
        let data = tempfile::tempdir().map_err(|e| format!("etcd data dir: {e}"))?;
        let mut server = EtcdServer {
            client_port: free_port(),
            peer_port: free_port(),
            data,
            child: None,
        };
        server.restart()?;
        Ok(server)
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    /// `etcd://127.0.0.1:PORT`, as Switchyard's `--discovery` takes it.
    pub fn discovery_url(&self) -> String {
        format!("etcd://127.0.0.1:{}", self.client_port)
    }

    pub fn port(&self) -> u16 {
        self.client_port
    }

    /// Kills the server (SIGKILL); its data stays for [`EtcdServer::restart`].
    pub fn stop(&mut self) {
        kill(&mut self.child);
    }

    /// Starts (again) on the same ports and data.
    pub fn restart(&mut self) -> Result<(), String> {
        self.stop();
        let client = format!("http://127.0.0.1:{}", self.client_port);
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let mut child = Command::new(which("etcd")?)
            .arg("--name=test")
            .arg(format!(
                "--data-dir={}",
                self.data.path().join("etcd").display()
            ))
            .arg(format!("--listen-client-urls={client}"))
            .arg(format!("--advertise-client-urls={client}"))
            .arg(format!("--listen-peer-urls={peer}"))
            .arg(format!("--initial-advertise-peer-urls={peer}"))
            .arg(format!("--initial-cluster=test={peer}"))
            .arg("--log-level=error")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("etcd: {e}"))?;
        wait_for_port(self.client_port, &mut child, "etcd")?;
        self.child = Some(child);
        Ok(())
    }
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A single nats-server (core NATS, no JetStream).
pub struct NatsServer {
    port: u16,
    child: Option<Child>,
}

impl NatsServer {
    pub fn start() -> Result<Self, String> {
        let mut server = NatsServer {
            port: free_port(),
            child: None,
        };
        server.restart()?;
        Ok(server)
    }

    /// `nats://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Kills the server (SIGKILL).
    pub fn stop(&mut self) {
        kill(&mut self.child);
    }

    /// Starts (again) on the same port.
    pub fn restart(&mut self) -> Result<(), String> {
        self.stop();
        let mut child = Command::new(which("nats-server")?)
            .args(["-a", "127.0.0.1", "-p"])
            .arg(self.port.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("nats-server: {e}"))?;
        wait_for_port(self.port, &mut child, "nats-server")?;
        self.child = Some(child);
        Ok(())
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etcd_starts_stops_and_restarts_on_the_same_port() {
        let mut etcd = EtcdServer::start().unwrap();
        let addr = SocketAddr::from(([127, 0, 0, 1], etcd.port()));
        assert!(TcpStream::connect(addr).is_ok());
        etcd.stop();
        assert!(TcpStream::connect(addr).is_err());
        etcd.restart().unwrap();
        assert!(TcpStream::connect(addr).is_ok());
    }

    #[test]
    fn nats_starts_stops_and_restarts_on_the_same_port() {
        let mut nats = NatsServer::start().unwrap();
        let addr = SocketAddr::from(([127, 0, 0, 1], nats.port()));
        assert!(TcpStream::connect(addr).is_ok());
        assert!(nats.url().starts_with("nats://127.0.0.1:"));
        nats.stop();
        assert!(TcpStream::connect(addr).is_err());
        nats.restart().unwrap();
        assert!(TcpStream::connect(addr).is_ok());
    }
}
