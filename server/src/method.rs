//! [`Method`]: the RPCs of `sessiond.v1.SessionService`, named once for
//! metrics labels, limits, logs and authentication.

use std::fmt;

/// One RPC of `sessiond.v1.SessionService`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    Load,
    Exists,
    Create,
    Save,
    Delete,
    CycleKey,
    Patch,
    ClearExpired,
}

/// The service's full name, as the gRPC path spells it.
const SERVICE: &str = "sessiond.v1.SessionService";

impl Method {
    /// Every RPC, in the order of the proto file.
    pub const ALL: [Self; 8] = [
        Self::Load,
        Self::Exists,
        Self::Create,
        Self::Save,
        Self::Delete,
        Self::CycleKey,
        Self::Patch,
        Self::ClearExpired,
    ];

    /// The RPC's name in the proto file, e.g. `CycleKey`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Load => "Load",
            Self::Exists => "Exists",
            Self::Create => "Create",
            Self::Save => "Save",
            Self::Patch => "Patch",
            Self::Delete => "Delete",
            Self::CycleKey => "CycleKey",
            Self::ClearExpired => "ClearExpired",
        }
    }

    /// The name of `method` for metrics labels and logs, `unknown` for a
    /// path that names no RPC.
    pub fn label(method: Option<Self>) -> &'static str {
        method.map_or("unknown", Self::name)
    }

    /// The RPC a gRPC request path names, `/sessiond.v1.SessionService/Load`;
    /// `None` for any other path.
    pub fn from_path(path: &str) -> Option<Self> {
        let name = path
            .strip_prefix('/')?
            .strip_prefix(SERVICE)?
            .strip_prefix('/')?;
        Self::from_name(name)
    }

    fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|method| method.name() == name)
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_are_read_from_paths() {
        assert_eq!(
            Method::from_path("/sessiond.v1.SessionService/Load"),
            Some(Method::Load)
        );
        assert_eq!(
            Method::from_path("/sessiond.v1.SessionService/CycleKey"),
            Some(Method::CycleKey)
        );
        for other in [
            "/sessiond.v1.SessionService/Nope",
            "/grpc.health.v1.Health/Check",
            "/other.Service/Load",
            "",
        ] {
            assert_eq!(Method::from_path(other), None, "{other}");
        }
        for method in Method::ALL {
            let path = format!("/sessiond.v1.SessionService/{method}");
            assert_eq!(Method::from_path(&path), Some(method));
        }
    }
}
