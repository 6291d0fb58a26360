//! Entry points for the fuzz targets in `fuzz/`: thin wrappers over the
//! crate-internal parsers they drive, compiled only with the `fuzzing`
//! feature, which no normal build enables. Not a stable API: the wrappers
//! return errors as text because a target only needs to know that the input
//! was refused without a panic.
//!
//! Every function that checks time takes `now` as Unix seconds so that a
//! crashing input replays the same way later.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, Uri};
use serde_json::{Value, json};

use crate::service::config::ViewerJwtConfig;
use crate::service::http::request::{batch_items, parse_request};
use crate::service::local_ivs::api::metadata::TimedMetadata;
use crate::service::local_ivs::api::{self, Context};
use crate::service::local_ivs::sigv4::{Authenticator, Credential};
use crate::service::local_ivs::state::{Scope, State};
use crate::service::local_ivs::{control_input, live_media, operation_of, playback};
use crate::service::mint::viewer::ViewerAuth;
use crate::{ChannelArn, Verifier};

/// The local IVS's clock in the fuzz targets, in Unix milliseconds.
const FUZZ_NOW_MS: u64 = 1_700_000_000_000;

/// A time `seconds` after the Unix epoch.
pub fn unix_time(seconds: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(seconds)
}

/// The claims checks of `Verifier::verify_at` on a payload (the JSON a
/// token's middle segment decodes to), as if its signature had been checked:
/// the fuzzer cannot sign, and the claims are what an attacker with a leaked
/// key or a confused signer controls. `channel` is the channel expected, if
/// any.
pub fn verify_payload(payload: &[u8], channel: Option<&str>, now: u64) -> Result<String, String> {
    let mut verifier = Verifier::new([]);
    if let Some(arn) = channel.and_then(|c| ChannelArn::parse(c).ok()) {
        verifier = verifier.expect_channel(arn);
    }
    let mut notes = Vec::new();
    verifier
        .check_payload(payload, &mut notes, unix_time(now))
        .map(|(claims, unknown)| format!("{} {unknown:?} {notes:?}", claims.to_json()))
        .map_err(|r| r.to_string())
}

/// A token request body as `POST /v1/token` (an object) or
/// `POST /v1/tokens` (`{"requests": [...]}`) reads it after the JSON parse:
/// the number of requests parsed.
pub fn parse_token_body(body: &[u8]) -> Result<usize, String> {
    let value: Value = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    if value.get("requests").is_some() {
        let items = batch_items(&value).map_err(|e| format!("{e:?}"))?;
        for (i, item) in items.iter().enumerate() {
            parse_request(item, &format!("requests[{i}].")).map_err(|e| format!("{e:?}"))?;
        }
        Ok(items.len())
    } else {
        parse_request(&value, "").map_err(|e| format!("{e:?}"))?;
        Ok(1)
    }
}

/// The viewer-JWT verifier with a JWKS read from a file, driven on its own
/// current-thread runtime (it is async for the JWKS refetch, which a file
/// source never does).
pub struct ViewerJwt {
    runtime: tokio::runtime::Runtime,
    auth: ViewerAuth,
}

impl ViewerJwt {
    /// A verifier for `issuer` and `audience`, with the channels in the
    /// `channels` claim and 5 s of leeway.
    pub fn new(issuer: &str, audience: &str, jwks_file: &Path) -> Result<Self, String> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        let config: ViewerJwtConfig = serde_json::from_value(json!({
            "issuer": issuer,
            "audience": audience,
            "jwks_file": jwks_file,
            "leeway_seconds": 5,
            "channels_claim": "channels",
        }))
        .map_err(|e| e.to_string())?;
        let auth = runtime.block_on(ViewerAuth::new(config))?;
        Ok(Self { runtime, auth })
    }

    /// Verifies a viewer JWT (against the real clock: `jsonwebtoken` reads
    /// it itself): the subject and the channels on success.
    pub fn verify(&self, token: &str) -> Result<(String, Vec<String>), String> {
        self.runtime
            .block_on(self.auth.verify(token))
            .map(|v| (v.subject, v.channels))
            .map_err(|e| format!("{e:?}"))
    }
}

/// The local IVS's request checks without its HTTP server: a state with one
/// private channel and one imported playback key in `123456789012`
/// `us-west-2`, and both ways of authenticating (any well-formed signature,
/// and a configured access key whose signature is checked).
#[derive(Clone)]
pub struct LocalIvs {
    state: State,
    scope: Scope,
    channel_arn: String,
    open: Authenticator,
    keyed: Authenticator,
}

/// The access key [`LocalIvs`] knows, and its secret.
pub const ACCESS_KEY: (&str, &str) = ("AKIDFUZZ", "fuzz-secret");

impl LocalIvs {
    /// The seeded state; `public_key_pem` is imported as its playback key.
    pub fn new(public_key_pem: &str) -> Result<Self, String> {
        let scope = Scope {
            account: "123456789012".into(),
            region: "us-west-2".into(),
        };
        let mut state = State::empty();
        let base_url = "http://127.0.0.1:1";
        let ctx = Context {
            scope: &scope,
            base_url,
            missing_buckets: &Default::default(),
            now_ms: FUZZ_NOW_MS,
            live_on_create: true,
            metadata: &TimedMetadata::default(),
        };
        let created = api::execute(
            "CreateChannel",
            &json!({"name": "fuzz", "authorized": true}),
            &mut state,
            &ctx,
        )
        .map_err(|e| format!("{e:?}"))?;
        let channel_arn = created["channel"]["arn"]
            .as_str()
            .ok_or("CreateChannel answered no ARN")?
            .to_owned();
        api::execute(
            "ImportPlaybackKeyPair",
            &json!({"name": "fuzz", "publicKeyMaterial": public_key_pem}),
            &mut state,
            &ctx,
        )
        .map_err(|e| format!("{e:?}"))?;
        let open = Authenticator {
            credentials: Default::default(),
            default_account: scope.account.clone(),
        };
        let mut keyed = open.clone();
        keyed.credentials.insert(
            ACCESS_KEY.0.into(),
            Credential {
                secret: ACCESS_KEY.1.into(),
                account: scope.account.clone(),
            },
        );
        Ok(Self {
            state,
            scope,
            channel_arn,
            open,
            keyed,
        })
    }

    /// The seeded channel's ARN.
    pub fn channel_arn(&self) -> &str {
        &self.channel_arn
    }

    /// The playback file name of the seeded channel
    /// (`REGION.ACCOUNT.channel.ID.m3u8`).
    pub fn playback_file(&self) -> String {
        let id = self.channel_arn.rsplit('/').next().unwrap_or_default();
        format!(
            "{}.{}.channel.{id}.m3u8",
            self.scope.region, self.scope.account
        )
    }

    /// A control-plane request as the server takes it after reading the
    /// body: the operation from method and path, SigV4 (both
    /// authenticators), the input checked against the model, then the
    /// operation run on a copy of the seeded state. Headers that are not
    /// valid HTTP are left out, as hyper would have refused them.
    pub fn control(
        &self,
        method: &[u8],
        path_and_query: &str,
        headers: &[(&[u8], &[u8])],
        body: &[u8],
        now: u64,
    ) -> Result<String, String> {
        let method = Method::from_bytes(method).map_err(|e| e.to_string())?;
        let uri: Uri = path_and_query.parse().map_err(|e| format!("{e}"))?;
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            if let (Ok(n), Ok(v)) = (HeaderName::from_bytes(name), HeaderValue::from_bytes(value)) {
                map.append(n, v);
            }
        }
        let err = |e| format!("{e:?}");
        let (operation, resource_arn) = operation_of(&method, uri.path()).map_err(err)?;
        let now = unix_time(now);
        // The keyed check's answer does not matter here (the fuzzer cannot
        // sign); that it answers at all on any input does.
        let _ = self.keyed.authenticate(&method, &uri, &map, body, now);
        let scope = self
            .open
            .authenticate(&method, &uri, &map, body, now)
            .map_err(err)?;
        let (input, _) = control_input(&operation, resource_arn, &uri, body).map_err(err)?;
        let mut state = self.state.clone();
        let metadata = TimedMetadata::default();
        let out = api::execute(
            &operation,
            &input,
            &mut state,
            &Context {
                scope: &scope,
                base_url: "http://127.0.0.1:1",
                missing_buckets: &Default::default(),
                now_ms: FUZZ_NOW_MS,
                live_on_create: true,
                metadata: &metadata,
            },
        )
        .map_err(err)?;
        // A payload PutMetadata took goes into the segments of every
        // rendition: the TS and ID3 writers run on it too.
        let sequence = FUZZ_NOW_MS / 1000 / live_media::SEGMENT_SECONDS;
        let cues = metadata.cues.lock().map_err(|e| e.to_string())?;
        for rendition in playback::RENDITIONS {
            cues.segment(&self.channel_arn, rendition.name, sequence);
        }
        Ok(out.to_string())
    }

    /// A playback request as the edge takes it: the file name, the `token`
    /// query parameter, then the token and origin checks on a copy of the
    /// seeded state.
    pub fn playback(
        &self,
        file: &str,
        query: Option<&str>,
        origin: Option<&str>,
        now: u64,
    ) -> Result<(), String> {
        let err = |e| format!("{e:?}");
        let (scope, channel_id) =
            playback::parse_playback_file(file).ok_or("not a playback file name")?;
        let token = playback::token_from_query(query).map_err(err)?;
        let mut state = self.state.clone();
        let session = playback::authorize(
            state.region_mut(&scope),
            &scope,
            &channel_id,
            playback::Viewer {
                token: token.as_deref(),
                origin,
                country: None,
            },
            unix_time(now),
        )
        .map_err(err)?;
        playback::check_origin(session.origins.as_ref(), session.strict, origin).map_err(err)
    }
}
