//! Binding a front door's TCP port, the same way for every front door.

use std::net::TcpListener;

/// Binds `host:port` for a tokio server (non-blocking); a failure names the front door (`what`)
/// and the address, so "address in use" says which of several listeners failed.
pub fn bind_listener(host: &str, port: u16, what: &str) -> std::io::Result<TcpListener> {
    let listener = TcpListener::bind((host, port)).map_err(|e| {
        std::io::Error::new(e.kind(), format!("cannot bind {what} {host}:{port}: {e}"))
    })?;
    listener.set_nonblocking(true)?;
    Ok(listener)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_taken_port_names_the_listener_and_address() {
        let taken = bind_listener("127.0.0.1", 0, "HTTP").unwrap();
        let port = taken.local_addr().unwrap().port();
        let err = bind_listener("127.0.0.1", port, "gRPC").unwrap_err();
        let message = err.to_string();
        assert!(message.contains("cannot bind gRPC 127.0.0.1:"), "{message}");
        assert!(message.contains(&port.to_string()), "{message}");
    }
}
