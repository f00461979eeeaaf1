//! HTTP to a key service: one blocking client per key, with a per-request
//! timeout, a time budget per call, retries with back-off and failover over
//! the service's addresses (the last address that answered is tried first).
//!
//! An answer is final when its status says the service decided (2xx, and
//! 4xx other than 429); anything else — no connection, a TLS failure, a
//! timeout, 5xx (sealed, no active node), 429, a redirect — moves on to the
//! next address, and the list is walked again after a back-off until the
//! budget is spent. Bodies that may carry a DEK or a token live in zeroized
//! buffers; nothing here logs a body or a header.

use std::io::Read;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use zeroize::Zeroizing;

use super::KmsError;
use crate::crypto::SecretBytes;
use crate::vault::ExternalKey;

/// Largest reply body read (Transit replies are a few hundred bytes).
const MAX_REPLY: u64 = 1 << 20;
/// First pause between two walks over the address list.
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// Longest pause between two walks.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// A request method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Method {
    Get,
    Post,
    Delete,
}

/// A JSON object of string fields, built in a zeroized buffer (the values
/// may be a DEK, a secret id), without an intermediate copy.
pub(crate) fn json_object(fields: &[(&str, &[u8])]) -> Zeroizing<Vec<u8>> {
    let len: usize = fields.iter().map(|(k, v)| k.len() + 2 * v.len() + 8).sum();
    let mut out = Zeroizing::new(Vec::with_capacity(len + 2));
    out.push(b'{');
    for (i, (k, v)) in fields.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        for (s, is_key) in [(k.as_bytes(), true), (*v, false)] {
            out.push(b'"');
            for &b in s.iter() {
                match b {
                    b'"' | b'\\' => {
                        out.push(b'\\');
                        out.push(b);
                    }
                    // Values are base64 or printable credentials; anything
                    // else is escaped rather than trusted.
                    0x20..=0x7e => out.push(b),
                    _ => out.extend_from_slice(format!("\\u{b:04x}").as_bytes()),
                }
            }
            out.push(b'"');
            if is_key {
                out.push(b':');
            }
        }
    }
    out.push(b'}');
    out
}

/// A final answer from one address.
pub(crate) struct Reply {
    /// HTTP status.
    pub status: u16,
    /// The body, zeroized on drop.
    pub body: Zeroizing<Vec<u8>>,
    /// The address that answered.
    pub address: String,
}

impl Reply {
    /// The service's own error messages (`{"errors": [...]}`), joined, cut
    /// to a line, printable characters only.
    pub fn errors(&self) -> String {
        #[derive(serde::Deserialize)]
        struct Errors {
            errors: Vec<String>,
        }
        let text = serde_json::from_slice::<Errors>(&self.body)
            .map(|e| e.errors.join("; "))
            .unwrap_or_default();
        let clean: String = text
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect::<String>()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        let mut cut: String = clean.chars().take(200).collect();
        if cut.is_empty() {
            cut = format!("HTTP {}", self.status);
        }
        cut
    }
}

/// The client of one key's service.
pub(crate) struct Http {
    agent: ureq::Agent,
    addresses: Vec<String>,
    preferred: AtomicUsize,
    request_timeout: Duration,
}

/// Reads the CA file into root certificates.
fn roots(path: &std::path::Path) -> Result<ureq::tls::RootCerts, KmsError> {
    let pem = std::fs::read(path)
        .map_err(|e| KmsError::Config(format!("cannot read CA file {}: {e}", path.display())))?;
    let mut certs = Vec::new();
    for item in ureq::tls::parse_pem(&pem) {
        match item {
            Ok(ureq::tls::PemItem::Certificate(c)) => certs.push(c),
            Ok(_) => {}
            Err(e) => {
                return Err(KmsError::Config(format!(
                    "CA file {} is not PEM: {e}",
                    path.display()
                )))
            }
        }
    }
    if certs.is_empty() {
        return Err(KmsError::Config(format!(
            "CA file {} holds no certificate",
            path.display()
        )));
    }
    Ok(ureq::tls::RootCerts::new_with_certs(&certs))
}

impl Http {
    /// A client for `spec`'s addresses, trusting `spec.ca_file` (else the
    /// built-in public roots), each request bounded by `request_timeout`.
    pub fn new(spec: &ExternalKey, request_timeout: Duration) -> Result<Http, KmsError> {
        let mut tls = ureq::tls::TlsConfig::builder();
        if let Some(ca) = &spec.ca_file {
            tls = tls.root_certs(roots(ca)?);
        }
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .proxy(None)
            .timeout_global(Some(request_timeout))
            .timeout_connect(Some(request_timeout.min(Duration::from_secs(2))))
            .user_agent(concat!("strata/", env!("CARGO_PKG_VERSION")))
            .tls_config(tls.build())
            .build();
        Ok(Http {
            agent: config.into(),
            addresses: spec
                .addresses
                .iter()
                .map(|a| a.trim_end_matches('/').to_string())
                .collect(),
            preferred: AtomicUsize::new(0),
            request_timeout,
        })
    }

    /// The addresses, for messages.
    pub fn addresses(&self) -> String {
        self.addresses.join(", ")
    }

    fn once(
        &self,
        addr: &str,
        method: Method,
        path: &str,
        token: Option<&SecretBytes>,
        body: Option<&[u8]>,
        timeout: Duration,
    ) -> Result<Reply, String> {
        let url = format!("{addr}/v1/{path}");
        let token = match token {
            Some(t) => Some(
                std::str::from_utf8(t.expose()).map_err(|_| "the token is not text".to_string())?,
            ),
            None => None,
        };
        let result = match method {
            Method::Get | Method::Delete => {
                let mut req = if method == Method::Get {
                    self.agent.get(&url)
                } else {
                    self.agent.delete(&url)
                };
                if let Some(t) = token {
                    req = req.header("X-Vault-Token", t);
                }
                req.config().timeout_global(Some(timeout)).build().call()
            }
            Method::Post => {
                let mut req = self
                    .agent
                    .post(&url)
                    .header("Content-Type", "application/json");
                if let Some(t) = token {
                    req = req.header("X-Vault-Token", t);
                }
                req.config()
                    .timeout_global(Some(timeout))
                    .build()
                    .send(body.unwrap_or(b"{}"))
            }
        };
        let mut resp = result.map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        let mut buf = Zeroizing::new(Vec::new());
        resp.body_mut()
            .as_reader()
            .take(MAX_REPLY + 1)
            .read_to_end(&mut buf)
            .map_err(|e| format!("reading the reply: {e}"))?;
        if buf.len() as u64 > MAX_REPLY {
            return Err("the reply is larger than 1 MiB".into());
        }
        Ok(Reply {
            status,
            body: buf,
            address: addr.to_string(),
        })
    }

    /// Sends one request, to the addresses in turn, until one gives a final
    /// answer or `budget` runs out ([`KmsError::Unreachable`] naming the
    /// addresses and the last cause).
    pub fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&SecretBytes>,
        body: Option<&[u8]>,
        budget: Duration,
    ) -> Result<Reply, KmsError> {
        let deadline = Instant::now() + budget;
        let n = self.addresses.len();
        let mut backoff = FIRST_BACKOFF;
        let mut cause = String::from("no address was tried");
        loop {
            let start = self.preferred.load(Ordering::Relaxed) % n.max(1);
            for k in 0..n {
                let i = (start + k) % n;
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                let addr = &self.addresses[i];
                let timeout = self.request_timeout.min(left);
                match self.once(addr, method, path, token, body, timeout) {
                    Ok(r)
                        if (200..300).contains(&r.status)
                            || ((400..500).contains(&r.status) && r.status != 429) =>
                    {
                        self.preferred.store(i, Ordering::Relaxed);
                        return Ok(r);
                    }
                    Ok(r) => cause = format!("{addr}: {}", r.errors()),
                    Err(e) => cause = format!("{addr}: {e}"),
                }
                tracing::debug!("key service request failed: {cause}");
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left <= backoff {
                return Err(KmsError::Unreachable {
                    addresses: self.addresses(),
                    cause,
                });
            }
            std::thread::sleep(backoff);
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_objects_escape_and_parse() {
        let body = json_object(&[("a", b"x\"y\\z"), ("b", b"")]);
        let v: serde_json::Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(v["a"], "x\"y\\z");
        assert_eq!(v["b"], "");
        let odd = json_object(&[("c", &[0x01, 0xff])]);
        let v: serde_json::Value = serde_json::from_slice(&odd).expect("json");
        assert_eq!(v["c"].as_str().map(|s| s.chars().count()), Some(2));
    }
}
