//! Where etcd is and how registrations are leased.

use std::time::Duration;

use switchyard_runtime::RuntimeError;

/// etcd's client port when an address leaves it out.
pub const DEFAULT_PORT: u16 = 2379;

/// How to reach etcd and how registrations are kept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EtcdConfig {
    /// `http://host:port` client URLs of the cluster members.
    pub endpoints: Vec<String>,
    /// First segment of every key (see the crate docs for the layout).
    pub key_prefix: String,
    /// Lifetime of the lease that keeps this process's registrations. A process that dies
    /// stops renewing it, so its instances vanish at most this long after its last renewal.
    pub lease_ttl: Duration,
    /// Bound on connecting and on every single etcd request; an unreachable etcd fails
    /// [`EtcdDiscovery::connect`](crate::EtcdDiscovery::connect) after this long.
    pub connect_timeout: Duration,
}

impl Default for EtcdConfig {
    fn default() -> Self {
        EtcdConfig {
            endpoints: vec![format!("http://127.0.0.1:{DEFAULT_PORT}")],
            key_prefix: "switchyard".into(),
            lease_ttl: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(3),
        }
    }
}

impl EtcdConfig {
    /// Parses `--discovery`: `etcd://host[:port][,host[:port]…][/key-prefix]` (or `http://`).
    /// The port defaults to 2379, the key prefix to `switchyard`; other settings are defaults.
    pub fn from_url(url: &str) -> Result<Self, RuntimeError> {
        let bad = |why: String| RuntimeError::Discovery(format!("bad etcd address {url:?}: {why}"));
        let url = url.trim();
        let rest = if let Some(rest) = strip_scheme(url, "etcd://") {
            rest
        } else if let Some(rest) = strip_scheme(url, "http://") {
            rest
        } else if strip_scheme(url, "https://").is_some() {
            return Err(bad(
                "TLS (https://) is not supported; use etcd:// or http://".into(),
            ));
        } else {
            return Err(bad("expected etcd://host:port[,host:port…]".into()));
        };
        let (hosts, path) = rest.split_once('/').unwrap_or((rest, ""));
        let mut config = EtcdConfig::default();
        let path = path.trim_matches('/');
        if !path.is_empty() {
            if path.contains(['?', '#']) {
                return Err(bad("query strings and fragments are not supported".into()));
            }
            config.key_prefix = path.to_string();
        }
        config.endpoints = hosts
            .split(',')
            .map(|host| parse_host(host.trim()).map_err(bad))
            .collect::<Result<_, _>>()?;
        Ok(config)
    }

    /// The key prefix without surrounding slashes; an error when nothing is left.
    pub(crate) fn trimmed_prefix(&self) -> Result<String, RuntimeError> {
        let prefix = self.key_prefix.trim_matches('/');
        if prefix.is_empty() {
            return Err(RuntimeError::Discovery(
                "the etcd key prefix must not be empty".into(),
            ));
        }
        Ok(prefix.to_string())
    }
}

fn strip_scheme<'a>(url: &'a str, scheme: &str) -> Option<&'a str> {
    let head = url.get(..scheme.len())?;
    head.eq_ignore_ascii_case(scheme)
        .then(|| &url[scheme.len()..])
}

/// `host[:port]` (IPv6 in brackets) → `http://host:port`.
fn parse_host(host: &str) -> Result<String, String> {
    if host.is_empty() {
        return Err("empty host".into());
    }
    if host.contains(['@', ' ', '?', '#']) {
        return Err(format!("{host:?} is not a host[:port]"));
    }
    let (name, port) = match host.rsplit_once(':') {
        // A bare IPv6 address has colons but no brackets: not ours to guess.
        Some((name, _)) if name.contains(':') && !name.starts_with('[') => {
            return Err(format!("{host:?}: write IPv6 addresses as [addr]:port"));
        }
        Some((name, port)) if !port.ends_with(']') => {
            let port = port
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| format!("{port:?} is not a port number (1-65535)"))?;
            (name, port)
        }
        _ => (host, DEFAULT_PORT),
    };
    if name.is_empty() || name == "[]" {
        return Err(format!("{host:?} has no host name"));
    }
    Ok(format!("http://{name}:{port}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoints(url: &str) -> Vec<String> {
        EtcdConfig::from_url(url).unwrap().endpoints
    }

    #[test]
    fn parses_one_or_many_hosts_with_default_port() {
        assert_eq!(
            endpoints("etcd://127.0.0.1:2379"),
            ["http://127.0.0.1:2379"]
        );
        assert_eq!(endpoints("http://etcd-0"), ["http://etcd-0:2379"]);
        assert_eq!(
            endpoints("ETCD://a:1, b ,[::1]:3"),
            ["http://a:1", "http://b:2379", "http://[::1]:3"]
        );
        assert_eq!(endpoints("etcd://[::1]"), ["http://[::1]:2379"]);
    }

    #[test]
    fn path_sets_the_key_prefix() {
        let config = EtcdConfig::from_url("etcd://a:1,b:2/team/prod/").unwrap();
        assert_eq!(config.key_prefix, "team/prod");
        assert_eq!(config.endpoints, ["http://a:1", "http://b:2"]);
        assert_eq!(
            EtcdConfig::from_url("etcd://a/").unwrap().key_prefix,
            "switchyard"
        );
    }

    #[test]
    fn rejects_bad_addresses_with_a_reason() {
        for (url, why) in [
            ("127.0.0.1:2379", "expected etcd://"),
            ("nats://a:1", "expected etcd://"),
            ("https://a:1", "TLS"),
            ("etcd://", "empty host"),
            ("etcd://a:1,,b:2", "empty host"),
            ("etcd://a:http", "not a port"),
            ("etcd://a:0", "not a port"),
            ("etcd://a:70000", "not a port"),
            ("etcd://:2379", "no host name"),
            ("etcd://::1", "IPv6"),
            ("etcd://user@a:1", "not a host"),
            ("etcd://a:1/p?x=1", "query"),
        ] {
            let err = EtcdConfig::from_url(url).unwrap_err().to_string();
            assert!(err.contains(why), "{url}: {err}");
        }
    }

    #[test]
    fn empty_prefix_is_refused() {
        let config = EtcdConfig {
            key_prefix: "//".into(),
            ..EtcdConfig::default()
        };
        assert!(config.trimmed_prefix().is_err());
        let config = EtcdConfig {
            key_prefix: "/a/".into(),
            ..EtcdConfig::default()
        };
        assert_eq!(config.trimmed_prefix().unwrap(), "a");
    }
}
