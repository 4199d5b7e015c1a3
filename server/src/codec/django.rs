//! The settings of Django's codec: `SECRET_KEY`, `SECRET_KEY_FALLBACKS` and
//! the store's salt, turned into a signer at start-up.

use std::sync::Arc;

use sessiond_signing::{DEFAULT_SALT, Signer};

use super::{Codec, CodecKind};
use crate::secret::Secret;

/// Django's settings for signing `session_data`. `Debug` shows no secret.
#[derive(Debug, Clone)]
pub struct DjangoConfig {
    /// Django's `SECRET_KEY`.
    pub secret_key: Option<Secret>,
    /// Django's `SECRET_KEY_FALLBACKS`: older keys still accepted.
    pub fallback_keys: Vec<Secret>,
    /// The salt of the Django session store class.
    pub salt: String,
}

impl Default for DjangoConfig {
    fn default() -> Self {
        Self {
            secret_key: None,
            fallback_keys: Vec::new(),
            salt: DEFAULT_SALT.to_owned(),
        }
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
                    .as_ref()
                    .ok_or(CodecError::MissingSecret)?;
                if django.salt.is_empty() {
                    return Err(CodecError::EmptySalt);
                }
                let signer = Signer::new(secret.expose(), &django.salt)
                    .map_err(|_| CodecError::EmptySecret)?
                    .with_fallback_keys(django.fallback_keys.iter().map(Secret::expose));
                Ok(Codec::Django(Arc::new(signer)))
            }
        }
    }
}
