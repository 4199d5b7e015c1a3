//! Redis store URLs: one server (`redis://`), a master found through
//! Sentinel (`redis+sentinel://`) or a Redis Cluster (`redis+cluster://`),
//! each over TLS with an `s` (`rediss://`, `rediss+sentinel://`,
//! `rediss+cluster://`); credentials, database, key prefix and TLS files,
//! shown back without any password.

use std::fmt;

use ::redis::{
    ConnectionAddr, ConnectionInfo, IntoConnectionInfo, RedisConnectionInfo, RedisError,
};
use percent_encoding::{AsciiSet, CONTROLS, percent_decode_str, utf8_percent_encode};

use super::tls::{OPTION_NAMES as TLS_OPTIONS, TlsFiles, TlsOptionError};
use crate::store::kit::{UrlOption, UrlOptionError, UrlQuery};

/// Where sessiond's keys start unless the URL says otherwise: namespaced so
/// that one Redis database can hold other applications' keys too, and
/// distinct from Django's cache keys, whose pickled values sessiond cannot
/// read.
pub const DEFAULT_PREFIX: &str = "sessiond:session:";

/// Redis's own default port.
pub const DEFAULT_PORT: u16 = 6379;

/// Sentinel's own default port.
pub const DEFAULT_SENTINEL_PORT: u16 = 26379;

/// The `prefix` option.
const PREFIX: UrlOption<String> = UrlOption {
    name: "prefix",
    expected: "non-empty and without spaces or control characters (a '+' in a query reads as a space; write %2B)",
    parse: |prefix| {
        let valid =
            !prefix.is_empty() && !prefix.chars().any(|c| c.is_whitespace() || c.is_control());
        valid.then(|| prefix.to_owned())
    },
    default: || DEFAULT_PREFIX.to_owned(),
    secret: false,
};

/// The `sentinel_password` option: what the sentinels themselves ask for
/// (their `requirepass`), which may differ from the master's password.
const SENTINEL_PASSWORD: UrlOption<Option<String>> = UrlOption {
    name: "sentinel_password",
    expected: "non-empty",
    parse: |password| (!password.is_empty()).then(|| Some(password.to_owned())),
    default: || None,
    secret: true,
};

/// Characters escaped when a prefix is shown back in a URL: those that would
/// end or change the query value.
const QUERY_VALUE: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'%')
    .add(b'&')
    .add(b'#')
    .add(b'+')
    .add(b'=');

/// Characters escaped in a user name or master name shown back in a URL.
const USERINFO: &AsciiSet = &QUERY_VALUE
    .add(b':')
    .add(b'@')
    .add(b'/')
    .add(b'?')
    .add(b',');

/// The URL forms this engine accepts, for error messages.
const EXPECTED: &str = "expected redis[s]://[USER:PASSWORD@]HOST[:PORT][/DB][?prefix=PREFIX], redis[s]+sentinel://[USER:PASSWORD@]HOST:PORT[,HOST:PORT…]/MASTER[/DB] or redis[s]+cluster://[USER:PASSWORD@]HOST:PORT[,HOST:PORT…]/";

/// A Redis store URL that sessiond does not understand.
#[derive(Debug, thiserror::Error)]
pub enum RedisUrlError {
    #[error("not a valid {scheme}:// URL ({source}); {EXPECTED}")]
    Malformed {
        scheme: &'static str,
        #[source]
        source: url::ParseError,
    },
    #[error("{0}:// needs a host, e.g. redis://127.0.0.1:6379/0")]
    MissingHost(&'static str),
    #[error(
        "{0}:// names one server; list several hosts only with redis+sentinel:// (the sentinels) or redis+cluster:// (seed nodes)"
    )]
    SeveralHosts(&'static str),
    #[error(
        "{scheme}://: cannot connect to the wildcard address {host}; name the host Redis runs on, e.g. 127.0.0.1"
    )]
    WildcardHost { scheme: &'static str, host: String },
    #[error("{scheme}://: the database must be a number such as /0, got '{given}'; {EXPECTED}")]
    Database { scheme: &'static str, given: String },
    #[error(
        "{0}:// needs the master's name as Sentinel knows it (`sentinel monitor NAME …`), e.g. redis+sentinel://s1:26379,s2:26379/mymaster/0"
    )]
    MissingMaster(&'static str),
    #[error(
        "{scheme}://: a Redis Cluster has only database 0, so the path must be empty or /, got '{given}'"
    )]
    ClusterPath { scheme: &'static str, given: String },
    #[error(
        "{0}://: the prefix must not contain '{{' or '}}': on a cluster sessiond puts each session key in {{braces}} (a hash tag), and a brace in the prefix would send every session to one node"
    )]
    ClusterPrefix(&'static str),
    #[error("{0}://: the user name or password is not valid UTF-8 after percent-decoding")]
    Credentials(&'static str),
    #[error("{0}://: a URL #fragment means nothing here; remove it")]
    Fragment(&'static str),
    #[error("{scheme}://: the option {name} is for TLS; use {tls_scheme}:// to connect with TLS")]
    TlsOptionWithoutTls {
        scheme: &'static str,
        name: &'static str,
        tls_scheme: &'static str,
    },
    #[error(transparent)]
    Options(#[from] UrlOptionError),
    #[error(transparent)]
    Tls(#[from] TlsOptionError),
}

/// How sessiond finds the Redis it writes to.
#[derive(Clone, PartialEq, Eq)]
pub(super) enum Topology {
    /// One server, at this address.
    Single(Node),
    /// The current master of `master`, as these sentinels report it.
    Sentinel {
        sentinels: Vec<Node>,
        master: String,
        password: Option<String>,
    },
    /// A Redis Cluster; these seed nodes tell where the others are.
    Cluster(Vec<Node>),
}

/// A host and port.
#[derive(Clone, PartialEq, Eq)]
pub(super) struct Node {
    pub(super) host: String,
    pub(super) port: u16,
}

impl fmt::Display for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// A parsed Redis store URL. Its `Display` and `Debug` forms hide the
/// passwords, so it can be logged.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisUrl {
    pub(super) topology: Topology,
    /// `Some` for the `rediss` schemes.
    pub(super) tls: Option<TlsFiles>,
    pub(super) db: i64,
    username: Option<String>,
    password: Option<String>,
    pub(super) prefix: String,
}

/// The schemes, by TLS and topology.
const SCHEMES: [(&str, bool, Kind); 6] = [
    ("redis", false, Kind::Single),
    ("rediss", true, Kind::Single),
    ("redis+sentinel", false, Kind::Sentinel),
    ("rediss+sentinel", true, Kind::Sentinel),
    ("redis+cluster", false, Kind::Cluster),
    ("rediss+cluster", true, Kind::Cluster),
];

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Single,
    Sentinel,
    Cluster,
}

impl RedisUrl {
    /// How the URL is written.
    pub const FORM: &'static str =
        "redis[s][+sentinel|+cluster]://HOST[:PORT][,HOST:PORT…][/MASTER][/DB][?prefix=PREFIX]";

    /// Parses a whole Redis URL of any of the six schemes.
    pub fn parse(text: &str) -> Result<Self, RedisUrlError> {
        let (scheme_text, rest) = text.split_once("://").unwrap_or(("redis", text));
        let &(scheme, tls, kind) = SCHEMES
            .iter()
            .find(|(name, _, _)| *name == scheme_text)
            .unwrap_or(&SCHEMES[0]);
        // The url crate reads one host; the others of a list are read one
        // by one below.
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(end);
        let (userinfo, hosts) = match authority.rsplit_once('@') {
            Some((userinfo, hosts)) => (format!("{userinfo}@"), hosts),
            None => (String::new(), authority),
        };
        let mut hosts = hosts.split(',');
        let first = hosts.next().unwrap_or_default();
        let malformed = |source| RedisUrlError::Malformed { scheme, source };
        let url =
            url::Url::parse(&format!("redis://{userinfo}{first}{tail}")).map_err(malformed)?;
        if url.fragment().is_some() {
            return Err(RedisUrlError::Fragment(scheme));
        }
        let default_port = match kind {
            Kind::Sentinel => DEFAULT_SENTINEL_PORT,
            Kind::Single | Kind::Cluster => DEFAULT_PORT,
        };
        let mut nodes = vec![node(scheme, &url, default_port)?];
        for host in hosts {
            let url = url::Url::parse(&format!("redis://{host}")).map_err(malformed)?;
            nodes.push(node(scheme, &url, default_port)?);
        }

        let decode = |text: &str| {
            percent_decode_str(text)
                .decode_utf8()
                .map(|text| text.into_owned())
                .map_err(|_| RedisUrlError::Credentials(scheme))
        };
        let username = match url.username() {
            "" => None,
            name => Some(decode(name)?),
        };
        let password = url.password().map(decode).transpose()?;

        let mut options = UrlQuery::parse(scheme, url.query().unwrap_or_default());
        let prefix = options.take(&PREFIX)?;
        let path = url.path().trim_start_matches('/');
        let (topology, db) = match kind {
            Kind::Single => {
                if nodes.len() > 1 {
                    return Err(RedisUrlError::SeveralHosts(scheme));
                }
                (Topology::Single(nodes.remove(0)), database(scheme, path)?)
            }
            Kind::Sentinel => {
                let (master, db) = path.split_once('/').unwrap_or((path, ""));
                if master.is_empty() {
                    return Err(RedisUrlError::MissingMaster(scheme));
                }
                let topology = Topology::Sentinel {
                    sentinels: nodes,
                    master: decode(master)?,
                    password: options.take(&SENTINEL_PASSWORD)?,
                };
                (topology, database(scheme, db.trim_end_matches('/'))?)
            }
            Kind::Cluster => {
                if !matches!(path, "" | "0") {
                    return Err(RedisUrlError::ClusterPath {
                        scheme,
                        given: format!("/{path}"),
                    });
                }
                if prefix.contains(['{', '}']) {
                    return Err(RedisUrlError::ClusterPrefix(scheme));
                }
                (Topology::Cluster(nodes), 0)
            }
        };
        let tls = if tls {
            Some(TlsFiles::take(scheme, &mut options)?)
        } else {
            if let Some(name) = TLS_OPTIONS.into_iter().find(|name| options.has(name)) {
                return Err(RedisUrlError::TlsOptionWithoutTls {
                    scheme,
                    name,
                    tls_scheme: tls_twin(scheme),
                });
            }
            None
        };
        options.finish()?;

        Ok(Self {
            topology,
            tls,
            db,
            username,
            password,
            prefix,
        })
    }

    /// The prefix of every key sessiond writes.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Whether sessions live on a Redis Cluster, whose multi-key scripts
    /// must stay within one hash slot.
    pub(super) fn is_cluster(&self) -> bool {
        matches!(self.topology, Topology::Cluster(_))
    }

    /// The user name and password of the servers that hold the sessions,
    /// and the database.
    pub(super) fn redis_settings(&self) -> RedisConnectionInfo {
        let mut redis = RedisConnectionInfo::default().set_db(self.db);
        if let Some(username) = &self.username {
            redis = redis.set_username(username);
        }
        if let Some(password) = &self.password {
            redis = redis.set_password(password);
        }
        redis
    }

    /// The address of `node` with this URL's TLS mode and credentials;
    /// certificates are added by the caller.
    pub(super) fn connection_info(&self, node: &Node) -> Result<ConnectionInfo, RedisError> {
        Ok(self
            .address_of(node)
            .into_connection_info()?
            .set_redis_settings(self.redis_settings()))
    }

    /// The address of `node`, plain or TLS as the scheme says.
    pub(super) fn address_of(&self, node: &Node) -> ConnectionAddr {
        match self.tls {
            None => ConnectionAddr::Tcp(node.host.clone(), node.port),
            Some(_) => ConnectionAddr::TcpTls {
                host: node.host.clone(),
                port: node.port,
                insecure: false,
                tls_params: None,
            },
        }
    }

    /// `HOST:PORT` (or the list of them), for messages.
    pub(super) fn address(&self) -> String {
        let nodes = match &self.topology {
            Topology::Single(node) => return node.to_string(),
            Topology::Sentinel { sentinels, .. } => sentinels,
            Topology::Cluster(nodes) => nodes,
        };
        let nodes: Vec<String> = nodes.iter().map(Node::to_string).collect();
        nodes.join(",")
    }

    /// The host of the first (or only) node, for messages.
    pub(super) fn first_host(&self) -> &str {
        match &self.topology {
            Topology::Single(node) => &node.host,
            Topology::Sentinel {
                sentinels: nodes, ..
            }
            | Topology::Cluster(nodes) => nodes.first().map_or("", |node| node.host.as_str()),
        }
    }

    /// The scheme, as it is written.
    pub(super) fn scheme(&self) -> &'static str {
        let kind = match self.topology {
            Topology::Single(_) => Kind::Single,
            Topology::Sentinel { .. } => Kind::Sentinel,
            Topology::Cluster(_) => Kind::Cluster,
        };
        SCHEMES
            .iter()
            .find(|(_, tls, each)| *tls == self.tls.is_some() && *each == kind)
            .map_or("redis", |(name, _, _)| name)
    }
}

/// The `rediss` form of a plain scheme.
fn tls_twin(scheme: &'static str) -> &'static str {
    match scheme {
        "redis+sentinel" => "rediss+sentinel",
        "redis+cluster" => "rediss+cluster",
        _ => "rediss",
    }
}

fn node(scheme: &'static str, url: &url::Url, default_port: u16) -> Result<Node, RedisUrlError> {
    let host = match url.host() {
        Some(url::Host::Domain(name)) if !name.is_empty() => name.to_owned(),
        Some(url::Host::Ipv4(ip)) => ip.to_string(),
        Some(url::Host::Ipv6(ip)) => ip.to_string(),
        _ => return Err(RedisUrlError::MissingHost(scheme)),
    };
    if host == "0.0.0.0" || host == "::" {
        return Err(RedisUrlError::WildcardHost { scheme, host });
    }
    Ok(Node {
        host,
        port: url.port().unwrap_or(default_port),
    })
}

fn database(scheme: &'static str, path: &str) -> Result<i64, RedisUrlError> {
    match path {
        "" => Ok(0),
        path => path
            .parse::<u32>()
            .map(i64::from)
            .map_err(|_| RedisUrlError::Database {
                scheme,
                given: format!("/{path}"),
            }),
    }
}

impl fmt::Display for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://", self.scheme())?;
        if let Some(username) = &self.username {
            write!(f, "{}", utf8_percent_encode(username, USERINFO))?;
        }
        if self.password.is_some() {
            f.write_str(":***")?;
        }
        if self.username.is_some() || self.password.is_some() {
            f.write_str("@")?;
        }
        f.write_str(&self.address())?;
        match &self.topology {
            Topology::Single(_) => write!(f, "/{}", self.db)?,
            Topology::Sentinel { master, .. } => {
                write!(f, "/{}/{}", utf8_percent_encode(master, USERINFO), self.db)?;
            }
            Topology::Cluster(_) => f.write_str("/")?,
        }
        write!(
            f,
            "?prefix={}",
            utf8_percent_encode(&self.prefix, QUERY_VALUE)
        )?;
        if let Topology::Sentinel {
            password: Some(_), ..
        } = &self.topology
        {
            f.write_str("&sentinel_password=***")?;
        }
        for (name, path) in self.tls.iter().flat_map(TlsFiles::options) {
            let path = path.to_string_lossy();
            write!(f, "&{name}={}", utf8_percent_encode(&path, QUERY_VALUE))?;
        }
        Ok(())
    }
}

impl fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_with_defaults() {
        let url = RedisUrl::parse("redis://127.0.0.1").unwrap();
        assert_eq!(url.address(), "127.0.0.1:6379");
        assert_eq!(url.db, 0);
        assert_eq!(url.prefix, DEFAULT_PREFIX);
        assert_eq!(url.username, None);
        assert_eq!(url.password, None);

        let url =
            RedisUrl::parse("redis://app:p%40ss%3Aword@redis.internal:6380/3?prefix=myapp:s:")
                .unwrap();
        assert_eq!(url.address(), "redis.internal:6380");
        assert_eq!(url.db, 3);
        assert_eq!(url.username.as_deref(), Some("app"));
        assert_eq!(url.password.as_deref(), Some("p@ss:word"));
        assert_eq!(url.prefix, "myapp:s:");

        let url = RedisUrl::parse("redis://:secret@[::1]/").unwrap();
        assert_eq!(url.address(), "[::1]:6379");
        assert_eq!(url.username, None);
        assert_eq!(url.password.as_deref(), Some("secret"));
    }

    #[test]
    fn the_password_never_shows() {
        let url = RedisUrl::parse("redis://app:hunter2@10.0.0.5:6380/2?prefix=a:b:").unwrap();
        let shown = url.to_string();
        assert_eq!(shown, "redis://app:***@10.0.0.5:6380/2?prefix=a:b:");
        assert!(!format!("{url:?}").contains("hunter2"));
        let url = RedisUrl::parse("redis://:hunter2@[::1]").unwrap();
        assert_eq!(
            url.to_string(),
            "redis://:***@[::1]:6379/0?prefix=sessiond:session:"
        );
    }

    #[test]
    fn urls_without_a_password_show_as_they_parse() {
        for text in [
            "redis://127.0.0.1:6379/0?prefix=sessiond:session:",
            "redis://cache:7000/15?prefix=my%26app%2Bx:",
            "redis://[::1]:6379/0?prefix=p:",
        ] {
            let url = RedisUrl::parse(text).unwrap();
            assert_eq!(url.to_string(), text);
            assert_eq!(RedisUrl::parse(&url.to_string()).unwrap(), url);
        }
    }

    #[test]
    fn bad_urls_say_what_is_wrong() {
        for (text, expected) in [
            ("redis://", "needs a host"),
            ("redis://h:notaport", "not a valid redis:// URL"),
            ("redis://h/abc", "database must be a number"),
            ("redis://h/-1", "database must be a number"),
            ("redis://h/0?db=1", "unknown option 'db'"),
            ("redis://h/0?prefix=", "prefix must be non-empty"),
            ("redis://h/0?prefix=a+b", "prefix must be non-empty"),
            ("redis://h/0?prefix=a&prefix=b", "more than once"),
            ("redis://h/0#x", "fragment"),
            ("redis://0.0.0.0", "wildcard"),
            ("redis://a,b", "names one server"),
            ("rediss://a:1,b:2", "names one server"),
            (
                "redis://h/0?ca=/ca.pem",
                "use rediss:// to connect with TLS",
            ),
            (
                "redis+cluster://h?key=/k.pem",
                "use rediss+cluster:// to connect with TLS",
            ),
            ("rediss://h?cert=/c.pem", "needs both cert= and key="),
            (
                "rediss://h?sentinel_password=x",
                "unknown option 'sentinel_password'",
            ),
            ("redis+sentinel://s1,s2", "needs the master's name"),
            ("redis+sentinel://s1,s2/", "needs the master's name"),
            ("redis+sentinel://s1/m/x", "database must be a number"),
            ("redis+sentinel://s1,/m", "needs a host"),
            (
                "redis+sentinel://s1/m?sentinel_password=",
                "sentinel_password must be non-empty",
            ),
            ("redis+cluster://a:1,b:2/3", "only database 0"),
            (
                "redis+cluster://a:1?prefix=app{x}:",
                "must not contain '{' or '}'",
            ),
            ("redis+cluster://a:1,0.0.0.0:2", "wildcard"),
        ] {
            let err = RedisUrl::parse(text).unwrap_err().to_string();
            assert!(err.contains(expected), "{text}: {err}");
        }
    }

    #[test]
    fn tls_sentinel_and_cluster_urls_parse() {
        let url =
            RedisUrl::parse("rediss://app:pw@redis.example.com:6380/2?ca=/etc/ssl/ca.pem").unwrap();
        assert_eq!(url.scheme(), "rediss");
        let tls = url.tls.clone().unwrap();
        assert_eq!(
            tls.ca.as_deref(),
            Some(std::path::Path::new("/etc/ssl/ca.pem"))
        );
        assert!(tls.client.is_none());
        assert_eq!(url.address(), "redis.example.com:6380");
        assert!(!url.is_cluster());
        assert_eq!(
            RedisUrl::parse("rediss://h").unwrap().tls,
            Some(TlsFiles::default())
        );

        let url = RedisUrl::parse(
            "redis+sentinel://app:pw@s1,s2:26380,[::1]/my%20master/3?sentinel_password=spw",
        )
        .unwrap();
        let Topology::Sentinel {
            sentinels,
            master,
            password,
        } = &url.topology
        else {
            panic!("not sentinel");
        };
        assert_eq!(master, "my master");
        assert_eq!(password.as_deref(), Some("spw"));
        assert_eq!(url.db, 3);
        assert_eq!(url.address(), "s1:26379,s2:26380,[::1]:26379");
        assert_eq!(sentinels.len(), 3);
        assert_eq!(url.password.as_deref(), Some("pw"));

        let url = RedisUrl::parse("rediss+cluster://:pw@n1:7000,n2:7001/?cert=/c&key=/k").unwrap();
        assert!(url.is_cluster());
        assert_eq!(url.db, 0);
        assert_eq!(url.address(), "n1:7000,n2:7001");
        assert!(url.tls.unwrap().client.is_some());
        assert!(RedisUrl::parse("redis+cluster://n1").unwrap().is_cluster());
    }

    #[test]
    fn every_form_shows_without_its_passwords_and_parses_back() {
        for (text, shown) in [
            (
                "rediss://u:hunter2@h:6380/1?ca=/ca%20dir/ca.pem",
                "rediss://u:***@h:6380/1?prefix=sessiond:session:&ca=/ca%20dir/ca.pem",
            ),
            (
                "redis+sentinel://:hunter2@s1,s2:5/m?sentinel_password=hunter3",
                "redis+sentinel://:***@s1:26379,s2:5/m/0?prefix=sessiond:session:&sentinel_password=***",
            ),
            (
                "rediss+cluster://u:hunter2@n1:7000,n2:7001?cert=/c&key=/k",
                "rediss+cluster://u:***@n1:7000,n2:7001/?prefix=sessiond:session:&cert=/c&key=/k",
            ),
        ] {
            let url = RedisUrl::parse(text).unwrap();
            assert_eq!(url.to_string(), shown);
            assert!(!format!("{url:?}").contains("hunter"));
        }
        for text in [
            "rediss://h:6380/1?prefix=p:&ca=/ca.pem",
            "redis+sentinel://s1:26379,s2:26379/mymaster/2?prefix=p:",
            "rediss+sentinel://s1:26379/m/0?prefix=p:&ca=/ca.pem&cert=/c.pem&key=/k.pem",
            "redis+cluster://n1:7000,n2:7001/?prefix=p:",
        ] {
            let url = RedisUrl::parse(text).unwrap();
            assert_eq!(url.to_string(), text);
            assert_eq!(RedisUrl::parse(&url.to_string()).unwrap(), url);
        }
    }
}
