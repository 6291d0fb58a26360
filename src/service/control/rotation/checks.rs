//! The checks before a new key may sign: IVS holds it under the ARN its
//! import answered, with its fingerprint, and a canary token of it verifies
//! (and plays on the canary channel, when one is set).

use std::time::Duration;

use super::steps::parse_fp;
use super::{RotationError, Rotator};
use crate::service::control::store::KeyStore as _;
use crate::{ChannelArn, PlaybackClaims, PrivateKey, SigningKey, TokenSigner, Verifier};

impl Rotator {
    /// The checks before a key may sign: IVS holds it under this ARN with
    /// its fingerprint, and a canary token of it verifies (and plays, when a
    /// canary channel is set). Returns the key ready to sign.
    pub(super) async fn checked_signing_key(
        &self,
        fingerprint: &str,
        arn: &str,
    ) -> Result<SigningKey, RotationError> {
        let inner = &self.inner;
        let pair = inner.ivs.key_pair(arn).await?.ok_or_else(|| {
            RotationError::Check(format!("IVS does not hold {arn} right after importing it"))
        })?;
        if pair.fingerprint != fingerprint {
            return Err(RotationError::Check(format!(
                "IVS holds fingerprint {} under {arn}, the key's is {fingerprint}",
                pair.fingerprint
            )));
        }
        let key = inner.store.get_key(&parse_fp(fingerprint)?).await?;
        let next = SigningKey::new(&key)
            .map_err(|e| RotationError::Check(e.to_string()))?
            .with_ivs_key_pair_arn(arn.to_owned());
        self.canary(&key).await?;
        Ok(next)
    }

    /// Signs a canary with `key`, verifies it, and plays it on the canary
    /// channel when one is configured.
    async fn canary(&self, key: &PrivateKey) -> Result<(), RotationError> {
        let signer = TokenSigner::new(
            SigningKey::new(key).map_err(|e| RotationError::Check(e.to_string()))?,
        );
        let channel = match &self.inner.options.canary {
            Some((arn, _)) => arn.clone(),
            None => ChannelArn::parse("arn:aws:ivs:us-west-2:000000000000:channel/canary")
                .map_err(|e| RotationError::Check(e.to_string()))?,
        };
        let claims = PlaybackClaims::builder(channel.clone())
            .expires_in(Duration::from_secs(60))
            .build()
            .map_err(|e| RotationError::Check(e.to_string()))?;
        let token = signer
            .sign(&claims)
            .map_err(|e| RotationError::Check(format!("canary signing: {e}")))?;
        Verifier::new([key.public_key()])
            .expect_channel(channel)
            .verify(token.as_str())
            .map_err(|e| RotationError::Check(format!("canary token: {e}")))?;
        if let Some((_, url)) = &self.inner.options.canary {
            let answer = self
                .inner
                .options
                .http
                .get(format!("{url}?token={}", token.as_str()))
                .send()
                .await
                .map_err(|e| RotationError::Check(format!("canary playback {url}: {e}")))?;
            if !answer.status().is_success() {
                return Err(RotationError::Check(format!(
                    "canary playback {url} answered {}",
                    answer.status()
                )));
            }
        }
        Ok(())
    }
}
