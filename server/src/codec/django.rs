//! The settings of Django's codec: `SECRET_KEY`, `SECRET_KEY_FALLBACKS` and
//! the store's salt, turned into a signer at start-up.

use std::sync::Arc;

use sessiond_signing::Signer;

use super::{Codec, CodecKind};

/// Django's settings for signing `session_data`.
#[derive(Clone, Default)]
pub struct DjangoConfig {
    pub secret_key: Option<String>,
    pub fallback_keys: Vec<String>,
    pub salt: String,
}

impl std::fmt::Debug for DjangoConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DjangoConfig")
            .field("secret_key", &self.secret_key.as_ref().map(|_| "***"))
            .field("fallback_keys", &self.fallback_keys.len())
            .field("salt", &self.salt)
            .finish()
    }
}

/// Why the codec settings cannot be used. Messages name the flag to set and
/// never show a secret.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error(
        "--codec django needs Django's SECRET_KEY: set --secret-key or SESSIOND_SECRET_KEY (prefer the variable: command lines are visible to other users)"
    )]
    MissingSecret,
    #[error("--django-salt (SESSIOND_DJANGO_SALT) must not be empty")]
    EmptySalt,
    #[error("the secret key is empty")]
    EmptySecret,
}

impl CodecKind {
    /// The codec this kind names, with Django's settings where needed.
    pub fn build(self, django: &DjangoConfig) -> Result<Codec, CodecError> {
        match self {
            Self::Json => Ok(Codec::Json),
            Self::Django => {
                let secret = django
                    .secret_key
                    .as_deref()
                    .ok_or(CodecError::MissingSecret)?;
                if django.salt.is_empty() {
                    return Err(CodecError::EmptySalt);
                }
                let signer = Signer::new(secret, &django.salt)
                    .map_err(|_| CodecError::EmptySecret)?
                    .with_fallback_keys(&django.fallback_keys);
                Ok(Codec::Django(Arc::new(signer)))
            }
        }
    }
}
