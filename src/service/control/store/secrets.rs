//! Private keys in AWS Secrets Manager: each key one secret named
//! `<keys.secret_prefix><fingerprint as 32 hex digits>` (Secrets Manager
//! allows no `:` in a name), its value the PKCS#8 PEM. A secret is created
//! once and never given a new value (write-once: `CreateSecret` only, never
//! `PutSecretValue`), so a key can never change under its fingerprint. The
//! key goes from memory to the service and back: nothing touches the
//! replica's disk.

use aws_sdk_secretsmanager::error::{DisplayErrorContext, ProvideErrorMetadata as _};
use zeroize::Zeroizing;

use super::StoreError;
use crate::{Fingerprint, PrivateKey};

/// The keys' secrets.
#[derive(Debug, Clone)]
pub(crate) struct SecretsKeys {
    client: aws_sdk_secretsmanager::Client,
    prefix: String,
}

impl SecretsKeys {
    /// Keys under `prefix`, through `client`.
    pub(crate) fn new(client: aws_sdk_secretsmanager::Client, prefix: &str) -> Self {
        Self {
            client,
            prefix: prefix.to_owned(),
        }
    }

    /// The name of a key's secret.
    pub(crate) fn secret_name(&self, fingerprint: &Fingerprint) -> String {
        format!(
            "{}{}",
            self.prefix,
            fingerprint.to_string().replace(':', "")
        )
    }

    /// Stores a new key as a new secret; one that exists is never replaced.
    pub(crate) async fn put_key(&self, key: &PrivateKey) -> Result<(), StoreError> {
        let name = self.secret_name(key.fingerprint());
        let pem = key
            .to_pkcs8_pem()
            .map_err(|e| StoreError::Io(e.to_string()))?;
        // The SDK takes its own copy of the value, which it does not zero
        // when the request is done: ours is zeroed on drop.
        let sent = self
            .client
            .create_secret()
            .name(&name)
            .description(format!(
                "ivs-playback-auth: the private half of IVS playback key {} (PKCS#8 PEM; written once)",
                key.fingerprint()
            ))
            .secret_string(pem.as_str())
            .send()
            .await;
        match sent {
            Ok(_) => {
                tracing::info!(target: "audit", action = "key_stored", fingerprint = %key.fingerprint(), secret = %name);
                Ok(())
            }
            Err(e) if e.code() == Some("ResourceExistsException") => {
                Err(StoreError::Exists(key.fingerprint().to_string()))
            }
            Err(e) => Err(StoreError::Io(format!(
                "Secrets Manager CreateSecret {name}: {}",
                DisplayErrorContext(&e)
            ))),
        }
    }

    /// A stored key, checked to be the one its name says.
    pub(crate) async fn get_key(
        &self,
        fingerprint: &Fingerprint,
    ) -> Result<PrivateKey, StoreError> {
        let name = self.secret_name(fingerprint);
        let out = match self.client.get_secret_value().secret_id(&name).send().await {
            Ok(out) => out,
            Err(e) if e.code() == Some("ResourceNotFoundException") => {
                return Err(StoreError::Missing(format!(
                    "{fingerprint} (no secret {name})"
                )));
            }
            Err(e) => {
                return Err(StoreError::Io(format!(
                    "Secrets Manager GetSecretValue {name}: {}",
                    DisplayErrorContext(&e)
                )));
            }
        };
        let pem = Zeroizing::new(
            out.secret_string()
                .ok_or_else(|| {
                    StoreError::Corrupt(format!(
                        "secret {name} has no text value (a PKCS#8 PEM was expected)"
                    ))
                })?
                .to_owned(),
        );
        let key = PrivateKey::from_pem(&pem)
            .map_err(|e| StoreError::Corrupt(format!("secret {name}: {e}")))?;
        if key.fingerprint() != fingerprint {
            return Err(StoreError::Corrupt(format!(
                "secret {name} holds key {}, not {fingerprint}",
                key.fingerprint()
            )));
        }
        Ok(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::control::aws::{self, moto};

    #[tokio::test]
    async fn keys_are_written_once_to_secrets_manager_and_read_back_checked() {
        let Some(moto) = moto::start().await else {
            return;
        };
        let client = aws::secrets_manager(&moto.sdk().await, Some(&moto.url));
        let keys = SecretsKeys::new(client.clone(), "ivs-playback-auth/test/");
        let key = PrivateKey::generate().unwrap();
        let fp = key.fingerprint();
        keys.put_key(&key).await.unwrap();
        // Write-once: the same fingerprint again is refused, never replaced.
        assert!(matches!(
            keys.put_key(&key).await,
            Err(StoreError::Exists(_))
        ));
        assert_eq!(keys.get_key(fp).await.unwrap().fingerprint(), fp);
        let name = keys.secret_name(fp);
        assert_eq!(
            name,
            format!("ivs-playback-auth/test/{}", fp.to_string().replace(':', ""))
        );
        let stored = client
            .get_secret_value()
            .secret_id(&name)
            .send()
            .await
            .unwrap();
        assert!(
            stored
                .secret_string()
                .unwrap()
                .starts_with("-----BEGIN PRIVATE KEY-----")
        );

        let other = PrivateKey::generate().unwrap();
        assert!(matches!(
            keys.get_key(other.fingerprint()).await,
            Err(StoreError::Missing(m)) if m.contains(&keys.secret_name(other.fingerprint()))
        ));
        // A secret under a key's name that holds another key, or no key.
        client
            .create_secret()
            .name(keys.secret_name(other.fingerprint()))
            .secret_string(key.to_pkcs8_pem().unwrap().as_str())
            .send()
            .await
            .unwrap();
        let e = keys.get_key(other.fingerprint()).await.unwrap_err();
        assert!(
            matches!(&e, StoreError::Corrupt(m) if m.contains("holds key")),
            "{e}"
        );
        let third = PrivateKey::generate().unwrap();
        client
            .create_secret()
            .name(keys.secret_name(third.fingerprint()))
            .secret_string("not a key")
            .send()
            .await
            .unwrap();
        assert!(matches!(
            keys.get_key(third.fingerprint()).await,
            Err(StoreError::Corrupt(_))
        ));
    }

    #[tokio::test]
    async fn an_unreachable_secrets_manager_is_an_error_that_names_the_secret() {
        let sdk = aws::sdk_config(Some("us-west-2")).await;
        // A port nothing listens on (bound, then released).
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let sdk = sdk
            .into_builder()
            .credentials_provider(
                aws_credential_types::provider::SharedCredentialsProvider::new(
                    aws_credential_types::Credentials::new("a", "b", None, None, "test"),
                ),
            )
            .build();
        let keys = SecretsKeys::new(
            aws::secrets_manager(&sdk, Some(&format!("http://127.0.0.1:{port}"))),
            "p/",
        );
        let key = PrivateKey::generate().unwrap();
        let e = keys.get_key(key.fingerprint()).await.unwrap_err();
        assert!(
            matches!(&e, StoreError::Io(m) if m.contains("GetSecretValue") && m.contains("p/")),
            "{e}"
        );
    }
}
