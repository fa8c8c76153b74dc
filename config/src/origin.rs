//! Parsing and resolution of `origin = "http://host[:port][/]"`.

use std::net::{Ipv6Addr, SocketAddr, ToSocketAddrs};

use crate::snapshot::Origin;

/// Host, port and authority parsed from an origin URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ParsedOrigin {
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) authority: String,
}

/// Parses `http://host[:port][/]`. Hosts may be names, IPv4 addresses or
/// bracketed IPv6 addresses; no userinfo, path, query or fragment.
pub(crate) fn parse_origin(url: &str) -> Result<ParsedOrigin, String> {
    let Some(rest) = url.strip_prefix("http://") else {
        return Err(format!(
            "origin {url:?} must start with \"http://\" (only plain HTTP origins are supported)"
        ));
    };
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    if let Some(bad) = authority.chars().find(|c| "/?#@ \\".contains(*c)) {
        return Err(format!(
            "origin {url:?} must be http://host[:port] with an optional trailing \"/\" only (found {bad:?})"
        ));
    }
    let (host, port_text) = split_host_port(authority)
        .ok_or_else(|| format!("origin {url:?} has an invalid host[:port]"))?;
    if host.is_empty() {
        return Err(format!("origin {url:?} has an empty host"));
    }
    if !host.starts_with('[')
        && !host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_')
    {
        return Err(format!("origin {url:?} has an invalid host {host:?}"));
    }
    let port = match port_text {
        None => 80,
        Some(p) => match p.parse::<u16>() {
            Ok(0) => return Err(format!("origin {url:?} has port 0")),
            Ok(port) if p.bytes().all(|b| b.is_ascii_digit()) => port,
            _ => return Err(format!("origin {url:?} has an invalid port {p:?}")),
        },
    };
    let bare_host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    Ok(ParsedOrigin {
        host: bare_host.to_owned(),
        port,
        authority: authority.to_owned(),
    })
}

/// Splits `host[:port]`; IPv6 hosts must be bracketed and are returned with brackets.
fn split_host_port(authority: &str) -> Option<(&str, Option<&str>)> {
    if authority.starts_with('[') {
        let close = authority.find(']')?;
        let (host, after) = authority.split_at(close + 1);
        host[1..close].parse::<Ipv6Addr>().ok()?;
        return match after {
            "" => Some((host, None)),
            _ => Some((host, Some(after.strip_prefix(':')?))),
        };
    }
    match authority.split_once(':') {
        Some((_, port)) if port.contains(':') => None,
        Some((host, port)) => Some((host, Some(port))),
        None => Some((authority, None)),
    }
}

/// Parses and resolves an origin URL into an [`Origin`].
pub(crate) fn load_origin(url: &str) -> Result<Origin, String> {
    let parsed = parse_origin(url)?;
    let addrs: Vec<SocketAddr> = (parsed.host.as_str(), parsed.port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve origin host {:?}: {e}", parsed.host))?
        .collect();
    if addrs.is_empty() {
        return Err(format!(
            "origin host {:?} resolved to no addresses",
            parsed.host
        ));
    }
    Ok(Origin {
        url: url.to_owned(),
        host: parsed.host,
        port: parsed.port,
        authority: parsed.authority,
        addrs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(url: &str) -> (String, u16, String) {
        match parse_origin(url) {
            Ok(p) => (p.host, p.port, p.authority),
            Err(e) => panic!("{url}: {e}"),
        }
    }

    #[test]
    fn accepts_valid_origins() {
        assert_eq!(
            ok("http://127.0.0.1:8080"),
            ("127.0.0.1".into(), 8080, "127.0.0.1:8080".into())
        );
        assert_eq!(
            ok("http://backend/"),
            ("backend".into(), 80, "backend".into())
        );
        assert_eq!(
            ok("http://[::1]:81/"),
            ("::1".into(), 81, "[::1]:81".into())
        );
        assert_eq!(ok("http://[::1]"), ("::1".into(), 80, "[::1]".into()));
    }

    #[test]
    fn rejects_invalid_origins() {
        for url in [
            "https://127.0.0.1",
            "127.0.0.1:80",
            "http://",
            "http://host/path",
            "http://host//",
            "http://host?q=1",
            "http://host#frag",
            "http://user@host",
            "http://host:0",
            "http://host:65536",
            "http://host:+80",
            "http://host:",
            "http://::1:80",
            "http://[::1",
            "http://[zz]:80",
            "http://[::1]80",
            "http://ho$t",
        ] {
            assert!(parse_origin(url).is_err(), "{url} should be rejected");
        }
    }

    #[test]
    fn resolves_ip_literals() {
        let origin = match load_origin("http://[::1]:9000/") {
            Ok(o) => o,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(
            origin.addrs,
            vec!["[::1]:9000".parse::<SocketAddr>().unwrap()]
        );
        assert_eq!(origin.url, "http://[::1]:9000/");
    }
}
