//! [`RedisConfig`]: where and how the Redis backends connect (one endpoint or a Redis Cluster,
//! TLS trust, client certificate), as one plain value shared by
//! [`RedisStore`](crate::store::RedisStore), [`RedisBus`](crate::bus::RedisBus) and
//! `rmcp::RedisEventStore`.
//!
//! Why a type of its own rather than a redis-rs `Client`: a Redis Cluster needs a
//! `ClusterClient`, TLS files must be read and checked once with an error that names the file,
//! and the value must be printable (`Debug`) without its password, so that a deployment can log
//! where it connects.

use std::fmt;
use std::path::{Path, PathBuf};

use redis::cluster::ClusterClient;
use redis::{
    Client, ClientTlsConfig, ConnectionAddr, IntoConnectionInfo, ProtocolVersion, TlsCertificates,
};

/// Where and how the Redis backends connect: the URL of one Redis (standalone, or a primary
/// behind a proxy) or the URLs of some nodes of a Redis Cluster, and for TLS the certificate
/// authority to trust and the client certificate to show.
///
/// A plain value: build it once, clone it, give it to
/// [`RedisStore::connect`](crate::store::RedisStore::connect),
/// [`RedisBus::connect_with`](crate::bus::RedisBus::connect_with) and (features `rmcp` and
/// `redis`) `RedisEventStore::connect`. Nothing is read or sent until one of them is built.
///
/// # URLs
///
/// `redis://[[user]:password@]host[:port][/db]` for plain TCP, `rediss://…` for TLS. The user
/// and password are those of a Redis ACL user (`AUTH user password`); a URL with only a
/// password (`redis://:secret@host`) authenticates as the `default` user. Percent-encode a `@`,
/// `:` or `/` in a password. For a cluster every URL must use the same scheme, user, password
/// and protocol (redis-rs's rule), the database must be 0, and a Unix socket is refused.
///
/// # TLS
///
/// With `rediss://` the server's certificate is always verified: against the system's trusted
/// roots by default, or against the PEM certificates of [`ca_file`](Self::ca_file) only. Its
/// host name must match the URL's host. [`client_cert`](Self::client_cert) adds a client
/// certificate for servers that require one (`tls-auth-clients yes`, mutual TLS). TLS is
/// rustls with the ring provider: no OpenSSL is needed to build or run. There is no switch to
/// turn verification off.
///
/// # What is printed
///
/// `Debug` shows the hosts, ports, scheme, user name and TLS file paths, never a password.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisConfig {
    urls: Vec<String>,
    cluster: bool,
    ca_file: Option<PathBuf>,
    client_cert: Option<(PathBuf, PathBuf)>,
}

/// What a [`RedisConfig`] builds: a client for one endpoint or for a cluster.
#[derive(Clone)]
#[allow(
    clippy::large_enum_variant,
    reason = "made once per backend and kept in place; never moved on a request's path"
)]
pub(crate) enum Source {
    Single(Client),
    Cluster(ClusterClient),
}

impl RedisConfig {
    /// One Redis at `url` (see the URL forms above).
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            urls: vec![url.into()],
            cluster: false,
            ca_file: None,
            client_cert: None,
        }
    }

    /// A Redis Cluster reached first through `nodes` (one URL each; any reachable node is
    /// enough, the others are found from its `CLUSTER SLOTS`). Commands go to the master of
    /// each key's slot and follow `MOVED` and `ASK` redirections; see the backends' docs.
    pub fn cluster<I, S>(nodes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            urls: nodes.into_iter().map(Into::into).collect(),
            cluster: true,
            ca_file: None,
            client_cert: None,
        }
    }

    /// Trusts only the CA certificates in the PEM file at `path` (one or more `CERTIFICATE`
    /// blocks) for `rediss://`, instead of the system's roots. The file is read when a backend
    /// is built.
    pub fn ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.ca_file = Some(path.into());
        self
    }

    /// Shows the client certificate chain in the PEM file `cert` with its private key in the
    /// PEM file `key` (PKCS#8, PKCS#1 or SEC1) to a server that asks for one (mutual TLS).
    /// The files are read when a backend is built.
    pub fn client_cert(mut self, cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        self.client_cert = Some((cert.into(), key.into()));
        self
    }

    /// Whether this names a Redis Cluster ([`cluster`](Self::cluster)).
    pub fn is_cluster(&self) -> bool {
        self.cluster
    }

    /// The client for these settings; `resp3` asks for RESP3 (the bus's push messages).
    /// Reads the TLS files. The error names what is wrong, never a password.
    pub(crate) fn source(&self, resp3: bool) -> Result<Source, String> {
        let certs = self.certificates()?;
        let mut infos = Vec::with_capacity(self.urls.len());
        for url in &self.urls {
            let mut info = url
                .as_str()
                .into_connection_info()
                .map_err(|error| format!("{}: {}", redact(url), error))?;
            if resp3 {
                let redis = info
                    .redis_settings()
                    .clone()
                    .set_protocol(ProtocolVersion::RESP3);
                info = info.set_redis_settings(redis);
            }
            if certs.is_some() && !matches!(info.addr(), ConnectionAddr::TcpTls { .. }) {
                return Err(format!(
                    "{}: a CA file or client certificate is given, but the URL is not rediss://",
                    redact(url)
                ));
            }
            infos.push(info);
        }
        if self.cluster {
            if infos.is_empty() {
                return Err("a Redis Cluster needs at least one node URL".to_owned());
            }
            let mut builder = redis::cluster::ClusterClientBuilder::new(infos);
            if let Some(certs) = certs {
                builder = builder.certs(certs);
            }
            builder
                .build()
                .map(Source::Cluster)
                .map_err(|e| e.to_string())
        } else {
            let [info] = <[_; 1]>::try_from(infos)
                .map_err(|_| "a single Redis needs exactly one URL".to_owned())?;
            match certs {
                Some(certs) => Client::build_with_tls(info, certs),
                None => Client::open(info),
            }
            .map(Source::Single)
            .map_err(|e| e.to_string())
        }
    }

    fn certificates(&self) -> Result<Option<TlsCertificates>, String> {
        if self.ca_file.is_none() && self.client_cert.is_none() {
            return Ok(None);
        }
        let root_cert = self.ca_file.as_deref().map(read_pem).transpose()?;
        let client_tls = match &self.client_cert {
            None => None,
            Some((cert, key)) => Some(ClientTlsConfig {
                client_cert: read_pem(cert)?,
                client_key: read_pem(key)?,
            }),
        };
        Ok(Some(TlsCertificates {
            client_tls,
            root_cert,
        }))
    }

    /// A description of the endpoints for logs and `Debug`: the URLs without passwords.
    pub(crate) fn describe(&self) -> String {
        let urls: Vec<String> = self.urls.iter().map(|url| redact(url)).collect();
        if self.cluster {
            format!("cluster [{}]", urls.join(", "))
        } else {
            urls.join(", ")
        }
    }
}

impl fmt::Debug for RedisConfig {
    /// The URLs with any password replaced by `***`, the cluster flag and the TLS file paths.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let urls: Vec<String> = self.urls.iter().map(|url| redact(url)).collect();
        f.debug_struct("RedisConfig")
            .field("urls", &urls)
            .field("cluster", &self.cluster)
            .field("ca_file", &self.ca_file)
            .field("client_cert", &self.client_cert)
            .finish()
    }
}

/// The contents of a PEM file, or an error naming it.
fn read_pem(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|error| format!("cannot read {}: {error}", path.display()))
}

/// `url` with the password (between the `:` after the user and the last `@` of the authority)
/// replaced by `***`. Text that is not a URL is returned as far as it cannot hold a password.
pub(crate) fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "<not a URL>".to_owned();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    match authority.rfind('@') {
        None => url.to_owned(),
        Some(at) => {
            let (userinfo, host) = authority.split_at(at);
            let user = match userinfo.split_once(':') {
                Some((user, _password)) => format!("{user}:***"),
                None => userinfo.to_owned(),
            };
            format!("{scheme}://{user}{host}{path}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_hides_only_the_password() {
        assert_eq!(
            redact("rediss://app:s3cr%40t@redis.example:6380/2"),
            "rediss://app:***@redis.example:6380/2"
        );
        assert_eq!(redact("redis://:pw@h"), "redis://:***@h");
        assert_eq!(redact("redis://user@h:1"), "redis://user@h:1");
        assert_eq!(redact("redis://h:1/0"), "redis://h:1/0");
        assert_eq!(redact("redis://a:b@c@h"), "redis://a:***@h");
        assert_eq!(redact("secret"), "<not a URL>");
    }

    #[test]
    fn debug_and_errors_never_show_the_password() {
        let config = RedisConfig::cluster(["redis://u:hunter2@127.0.0.1:1", "nonsense:hunter2"]);
        assert!(!format!("{config:?}").contains("hunter2"));
        let Err(error) = config.source(false) else {
            panic!("a URL without a scheme is refused");
        };
        assert!(!error.contains("hunter2"), "{error}");
        let config = RedisConfig::new("redis://u:hunter2@127.0.0.1:1").ca_file("/nonexistent.pem");
        let Err(error) = config.source(false) else {
            panic!("a missing CA file is refused");
        };
        assert!(error.contains("/nonexistent.pem"), "{error}");
        assert!(!error.contains("hunter2"), "{error}");
    }

    #[test]
    fn tls_files_need_rediss() {
        let dir = std::env::temp_dir().join(format!("tms-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ca = dir.join("ca.pem");
        std::fs::write(&ca, b"").unwrap();
        let Err(error) = RedisConfig::new("redis://127.0.0.1:1")
            .ca_file(&ca)
            .source(false)
        else {
            panic!("a CA file with redis:// is refused");
        };
        assert!(error.contains("not rediss://"), "{error}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
