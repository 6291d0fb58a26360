//! The command line: `keys generate|fingerprint|rotate|import`, `token`, `verify`,
//! `local-ivs`, `serve`, `healthcheck`, `coordination create-table`.
//!
//! Every failure is one line on stderr that names the argument at fault, and
//! a non-zero exit: 1 for a token that does not verify, 2 for bad input.

use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use clap::{Args, Parser, Subcommand};

use crate::claims::{names, unix_seconds};
use crate::{
    AllowedOrigins, Backend, ChannelArn, ClaimError, Error, MaximumResolution, Origin,
    PlaybackClaims, PrivateKey, PublicKey, Rejection, SigningKey, TokenSigner, Verifier, ViewerId,
    ViewerSessionVersion,
};

/// Amazon IVS playback-authorization tokens for private channels.
#[derive(Debug, Parser)]
#[command(name = "ivs-playback-auth", version, about, max_term_width = 100)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Manage P-384 playback keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Sign a playback token.
    Token(TokenArgs),
    /// Check a token the way IVS does and explain why it fails.
    Verify(VerifyArgs),
    /// Run a local stand-in for the IVS control plane and playback check.
    LocalIvs(LocalIvsArgs),
    /// Run the token service (with no config: local IVS, dev key, demo channel).
    Serve(ServeArgs),
    /// Exit 0 if the service on this host is ready (GET /readyz answers 200),
    /// else 1: a container's HEALTHCHECK, for images without curl.
    Healthcheck(HealthcheckArgs),
    /// The DynamoDB table replicas coordinate through.
    #[command(subcommand)]
    Coordination(CoordinationCommand),
}

#[derive(Debug, Subcommand)]
enum CoordinationCommand {
    /// Create coordination.table (string keys `pk` and `sk`, billed per
    /// request, DynamoDB's TTL on `purge_at`) and wait until it is active;
    /// a table that exists is checked and gets its TTL turned on.
    CreateTable {
        /// The service's configuration (coordination.table, its endpoint,
        /// ivs.region).
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
}

#[derive(Debug, Args)]
struct HealthcheckArgs {
    /// The service's configuration, as given to `serve` (with the same
    /// IVS_AUTH__SECTION__KEY overrides): it finds the port in server.listen.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Ask this URL instead (e.g. http://127.0.0.1:8080/readyz).
    #[arg(long, value_name = "URL", conflicts_with = "config")]
    url: Option<String>,
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// A TOML configuration file (see config.example.toml); environment
    /// variables IVS_AUTH__SECTION__KEY override it.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct LocalIvsArgs {
    /// Address to listen on (port 0 picks a free port; the first line printed
    /// is the endpoint URL).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:4590")]
    listen: std::net::SocketAddr,
    /// Keep state in this file across restarts (written atomically).
    #[arg(long, value_name = "FILE")]
    state_file: Option<PathBuf>,
    /// The AWS account of requests whose access key is not configured.
    #[arg(long, value_name = "ID", default_value = "123456789012")]
    account_id: String,
    /// Verify SigV4 signatures for this key: ACCESS_KEY_ID:SECRET[:ACCOUNT]
    /// (repeat for several). Without any, every well-formed signature passes.
    #[arg(long = "credential", value_name = "KEY:SECRET[:ACCOUNT]", value_parser = parse_credential)]
    credentials: Vec<(String, String, Option<String>)>,
    /// Serve POST /_local/reset, POST /_local/faults, GET /_local/calls (calls served, faults pending),
    /// POST /_local/streams/start {"streamKey": "..."} (a broadcaster connects) and
    /// POST /_local/quota-clock {"pause": true} / {"advanceMs": N} (PutMetadata's rate-quota clock).
    #[arg(long)]
    test_controls: bool,
    /// Channels are offline until a stream starts (POST /_local/streams/start), as IVS's are until
    /// someone broadcasts. Default: a channel's stream starts when the channel is created.
    #[arg(long, requires = "test_controls")]
    offline_channels: bool,
    /// Take the viewer's country (ISO 3166-1 alpha-2) for playback restriction policies from this
    /// request header, set by a proxy in front or a test (e.g. X-Country). Without it the country is
    /// unknown, and a policy that restricts countries refuses playback.
    #[arg(long, value_name = "HEADER")]
    trusted_country_header: Option<String>,
    /// Base URL written into playback URLs (default: http:// + the bound address).
    #[arg(long, value_name = "URL")]
    public_url: Option<String>,
    /// Treat this S3 bucket as missing: a recording configuration naming it
    /// ends in CREATE_FAILED (repeat for several).
    #[arg(long = "missing-bucket", value_name = "BUCKET")]
    missing_buckets: Vec<String>,
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Generate a key pair: NAME.pem (private, PKCS#8, mode 0600) and
    /// NAME.pub.pem (the public key to import into IVS).
    Generate {
        /// Directory to write into (created if missing).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// File name stem.
        #[arg(long, default_value = "playback-key", value_parser = parse_name)]
        name: String,
        /// If the key already exists, check it, print its fingerprint and
        /// succeed instead of refusing.
        #[arg(long)]
        if_missing: bool,
    },
    /// Print the IVS fingerprint of a private or public key file.
    Fingerprint {
        /// A PEM or DER key, private (SEC1 or PKCS#8) or public (SPKI).
        file: PathBuf,
    },
    /// Rotate the signing key in IVS now (a running `serve` on the same key
    /// directory picks the new key up at its next sweep).
    Rotate {
        /// The service's configuration (IVS and the key directory).
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Adopt an existing private key (e.g. one whose public half was
    /// imported in the IVS console): store it, find its IVS key pair by
    /// fingerprint or import it; it signs at once if no key does, else from
    /// the next rotation.
    Import {
        /// The private key (PEM or DER, SEC1 or PKCS#8).
        #[arg(long, value_name = "FILE")]
        private_key: PathBuf,
        /// The service's configuration (IVS and the key directory).
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
}

#[derive(Debug, Args)]
struct TokenArgs {
    /// The private key (PEM or DER, SEC1 or PKCS#8).
    #[arg(long, value_name = "FILE")]
    key: PathBuf,
    /// The channel to play.
    #[arg(long, value_name = "ARN", value_parser = ChannelArn::parse)]
    channel_arn: ChannelArn,
    /// Lifetime in seconds; at most 595 with --viewer-id or --single-use.
    #[arg(long, value_name = "SECONDS", default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..))]
    ttl: u64,
    /// A pseudonymous viewer id (1 to 40 characters, no personal data).
    #[arg(long, value_name = "ID", value_parser = ViewerId::parse)]
    viewer_id: Option<ViewerId>,
    /// The viewer's session version (0 to 2147483647); needs --viewer-id.
    #[arg(long, value_name = "N", value_parser = parse_session_version)]
    viewer_session_version: Option<ViewerSessionVersion>,
    /// Make the token single-use (a random UUID).
    #[arg(long)]
    single_use: bool,
    /// An origin allowed to play (repeat for several), or `*`.
    #[arg(long = "origin", value_name = "URL")]
    origins: Vec<String>,
    /// Check the origin on every playlist and segment request.
    #[arg(long)]
    strict_origin: bool,
    /// Cap the resolution: SD, HD or FULL_HD.
    #[arg(long, value_name = "R", value_parser = parse_resolution)]
    max_resolution: Option<MaximumResolution>,
    /// Signing backend.
    #[arg(long, value_parser = parse_backend, default_value = Backend::DEFAULT.name())]
    backend: Backend,
    /// Print JSON with the token, its expiry and the key fingerprint.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct VerifyArgs {
    /// A public key that may have signed it (repeat for a key set); a private
    /// key file gives its public half.
    #[arg(long = "public-key", value_name = "FILE", required = true)]
    public_keys: Vec<PathBuf>,
    /// Require the token to be for this channel.
    #[arg(long, value_name = "ARN", value_parser = ChannelArn::parse)]
    channel_arn: Option<ChannelArn>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
    /// The token, or a playback URL with `?token=` (as copied from a
    /// browser: percent-encoding and a `#fragment` are fine).
    token: String,
}

/// Runs the command line and returns the process's exit code.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return clap_error(&e),
    };
    let result = match cli.command {
        Command::Keys(KeysCommand::Generate {
            out,
            name,
            if_missing,
        }) => keys_generate(&out, &name, if_missing),
        Command::Keys(KeysCommand::Fingerprint { file }) => keys_fingerprint(&file),
        Command::Keys(KeysCommand::Rotate { config }) => keys_rotate(config.as_deref()),
        Command::Keys(KeysCommand::Import {
            private_key,
            config,
        }) => keys_import(&private_key, config.as_deref()),
        Command::Token(args) => token(args),
        Command::Verify(args) => verify(args),
        Command::LocalIvs(args) => local_ivs(args),
        Command::Serve(args) => serve(args),
        Command::Healthcheck(args) => Ok(healthcheck(args)),
        Command::Coordination(CoordinationCommand::CreateTable { config }) => {
            create_table(config.as_deref())
        }
    };
    match result {
        Ok(code) => code,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::from(2)
        }
    }
}

/// clap's own errors, cut to their first line: the argument and the reason.
fn clap_error(e: &clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    match e.kind() {
        ErrorKind::DisplayHelp
        | ErrorKind::DisplayVersion
        | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = e.print();
            if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            }
        }
        _ => {
            // clap lists some arguments on indented lines after a `:`
            // (missing required arguments): fold them into the first line.
            let rendered = e.render().to_string();
            let mut lines = rendered.lines();
            let mut line = lines
                .next()
                .unwrap_or("error: invalid arguments")
                .to_owned();
            if line.ends_with(':') {
                let listed: Vec<&str> = lines
                    .take_while(|l| l.starts_with(' '))
                    .map(str::trim)
                    .collect();
                line = format!("{} {}", line, listed.join(", "));
            }
            eprintln!("{line} (see --help)");
            ExitCode::from(2)
        }
    }
}

fn keys_generate(out: &Path, name: &str, if_missing: bool) -> Result<ExitCode, String> {
    create_private_dir(out).map_err(|e| format!("--out {}: {e}", out.display()))?;
    let private_path = out.join(format!("{name}.pem"));
    let public_path = out.join(format!("{name}.pub.pem"));
    if if_missing && private_path.exists() {
        let key = PrivateKey::read_file(&private_path).map_err(|e| format!("--out: {e}"))?;
        match PublicKey::read_file(&public_path) {
            Ok(public) if public == *key.public_key() => {}
            Ok(_) => {
                return Err(format!(
                    "--out: {} is not the public key of {}",
                    public_path.display(),
                    private_path.display()
                ));
            }
            // The private key is what matters; its public half can be rewritten.
            Err(_) if !public_path.exists() => key
                .public_key()
                .write_pem_file(&public_path)
                .map_err(|e| format!("--out: {e}"))?,
            Err(e) => return Err(format!("--out: {e}")),
        }
        println!("existing key: {}", private_path.display());
        println!("fingerprint: {}", key.fingerprint());
        return Ok(ExitCode::SUCCESS);
    }
    for path in [&private_path, &public_path] {
        if path.exists() {
            return Err(format!(
                "--out: {} already exists; refusing to overwrite a key (choose another --name or directory)",
                path.display()
            ));
        }
    }
    let key = PrivateKey::generate().map_err(|e| e.to_string())?;
    // The private key first: if the public write fails, the public key can be
    // derived again from it; the reverse would lose the key.
    key.write_pem_file(&private_path)
        .map_err(|e| format!("--out: {e}"))?;
    key.public_key()
        .write_pem_file(&public_path)
        .map_err(|e| format!("--out: {e}"))?;
    let mut stdout = io::stdout().lock();
    let _ = writeln!(
        stdout,
        "private key: {} (mode 0600)",
        private_path.display()
    );
    let _ = writeln!(stdout, "public key:  {}", public_path.display());
    let _ = writeln!(stdout, "fingerprint: {}", key.fingerprint());
    let _ = write!(stdout, "{}", key.public_key().to_pem());
    Ok(ExitCode::SUCCESS)
}

fn create_private_dir(dir: &Path) -> io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt as _;
        builder.mode(0o700);
    }
    builder.create(dir)
}

fn keys_fingerprint(file: &Path) -> Result<ExitCode, String> {
    let public = PublicKey::read_file(file).map_err(|e| format!("FILE: {e}"))?;
    println!("{}", public.fingerprint());
    Ok(ExitCode::SUCCESS)
}

fn token(args: TokenArgs) -> Result<ExitCode, String> {
    let key = PrivateKey::read_file(&args.key).map_err(|e| format!("--key: {e}"))?;
    let signing_key =
        SigningKey::with_backend(&key, args.backend).map_err(|e| format!("--key: {e}"))?;
    let mut builder = PlaybackClaims::builder(args.channel_arn)
        .expires_in(Duration::from_secs(args.ttl))
        .strict_origin_enforcement(args.strict_origin);
    if let Some(id) = args.viewer_id {
        builder = builder.viewer_id(id);
    }
    if let Some(version) = args.viewer_session_version {
        builder = builder.viewer_session_version(version);
    }
    if args.single_use {
        builder = builder.single_use();
    }
    if let Some(resolution) = args.max_resolution {
        builder = builder.maximum_resolution(resolution);
    }
    if !args.origins.is_empty() {
        builder = builder.allowed_origins(parse_origins(&args.origins).map_err(claim_message)?);
    }
    let now = SystemTime::now();
    let claims = builder.build_at(now).map_err(|e| match e {
        Error::Claim(c) => claim_message(c),
        other => other.to_string(),
    })?;
    let token = TokenSigner::new(signing_key)
        .sign_at(&claims, now)
        .map_err(|e| e.to_string())?;
    if args.json {
        let out = serde_json::json!({
            "token": token.as_str(),
            "expires_at": token.expires_at().unix_seconds(),
            "fingerprint": token.fingerprint().to_string(),
            "claims": serde_json::to_value(&claims).unwrap_or_default(),
        });
        println!("{out}");
    } else {
        println!("{token}");
    }
    Ok(ExitCode::SUCCESS)
}

fn parse_origins(values: &[String]) -> Result<AllowedOrigins, ClaimError> {
    if values.iter().any(|v| v.trim() == "*") {
        if values.len() > 1 {
            return Err(ClaimError::new(
                names::ALLOW_ORIGIN,
                "`*` must be the only --origin",
            ));
        }
        return Ok(AllowedOrigins::any());
    }
    let mut origins = Vec::with_capacity(values.len());
    for value in values {
        // A comma-separated list in one --origin is accepted too.
        for part in value.split(',') {
            origins.push(Origin::parse(part.trim())?);
        }
    }
    AllowedOrigins::from_origins(origins)
}

/// A claim error, led by the command-line flag that set the claim.
fn claim_message(e: ClaimError) -> String {
    let flag = match e.claim() {
        names::CHANNEL_ARN => "--channel-arn",
        names::EXP => "--ttl",
        names::ALLOW_ORIGIN => "--origin",
        names::STRICT_ORIGIN => "--strict-origin",
        names::SINGLE_USE_UUID => "--single-use",
        names::VIEWER_ID => "--viewer-id",
        names::VIEWER_SESSION_VERSION => "--viewer-session-version",
        names::MAXIMUM_RESOLUTION => "--max-resolution",
        _ => "argument",
    };
    format!("{flag}: {e}")
}

fn verify(args: VerifyArgs) -> Result<ExitCode, String> {
    let mut keys = Vec::with_capacity(args.public_keys.len());
    for path in &args.public_keys {
        keys.push(PublicKey::read_file(path).map_err(|e| format!("--public-key: {e}"))?);
    }
    let mut verifier = Verifier::new(&keys);
    if let Some(channel) = args.channel_arn {
        verifier = verifier.expect_channel(channel);
    }
    let token = token_from_input(&args.token).map_err(|e| format!("TOKEN: {e}"))?;
    let now = SystemTime::now();
    match verifier.verify_at(&token, now) {
        Ok(verified) => {
            let claims = verified.claims();
            let exp = claims.expires_at().unix_seconds();
            let remaining = exp.saturating_sub(unix_seconds(now));
            if args.json {
                let out = serde_json::json!({
                    "valid": true,
                    "fingerprint": verified.fingerprint().to_string(),
                    "expires_in_seconds": remaining,
                    "claims": serde_json::to_value(claims).unwrap_or_default(),
                    "unknown_claims": verified.unknown_claims(),
                    "notes": verified.notes(),
                });
                println!("{out}");
            } else {
                println!(
                    "valid: signed by {}, channel {}, expires in {remaining} s",
                    verified.fingerprint(),
                    claims.channel_arn()
                );
                if !verified.unknown_claims().is_empty() {
                    println!(
                        "note: claims IVS does not document (ignored): {}",
                        verified.unknown_claims().join(", ")
                    );
                }
                // What the token relies on beyond the IVS docs: valid for a
                // standard JWT verifier, not promised by IVS.
                for note in verified.notes() {
                    println!("note: {note}");
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(rejection) => {
            report_rejection(&rejection, args.json);
            Ok(ExitCode::from(1))
        }
    }
}

fn report_rejection(rejection: &Rejection, json: bool) {
    if json {
        let out = serde_json::json!({
            "valid": false,
            "code": rejection.code(),
            "reason": rejection.to_string(),
        });
        println!("{out}");
    } else {
        eprintln!("invalid: {rejection}");
    }
}

/// The token itself, from a bare token or a playback URL as a browser shows
/// it: the `#fragment` is dropped (a player never sends it) and the query is
/// read as the local IVS edge reads it (percent-decoding; the parameter
/// twice is refused).
fn token_from_input(input: &str) -> Result<String, String> {
    let input = input.trim();
    if !(input.contains("://") || input.contains('?') || input.starts_with('/')) {
        return Ok(input.to_owned());
    }
    let without_fragment = input.split('#').next().unwrap_or_default();
    let query = without_fragment.split_once('?').map(|(_, q)| q);
    match crate::service::local_ivs::token_from_query(query) {
        Ok(Some(token)) => Ok(token),
        Ok(None) => Err(
            "the URL has no `token` query parameter; give the token or a URL with `?token=`".into(),
        ),
        Err(refusal) => Err(refusal.reason),
    }
}

fn parse_credential(s: &str) -> Result<(String, String, Option<String>), String> {
    let mut parts = s.splitn(3, ':');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(key), Some(secret), account) if !key.is_empty() && !secret.is_empty() => Ok((
            key.to_owned(),
            secret.to_owned(),
            account.map(str::to_owned),
        )),
        _ => Err("must be ACCESS_KEY_ID:SECRET or ACCESS_KEY_ID:SECRET:ACCOUNT".to_owned()),
    }
}

fn parse_session_version(s: &str) -> Result<ViewerSessionVersion, ClaimError> {
    s.parse()
}

fn parse_resolution(s: &str) -> Result<MaximumResolution, ClaimError> {
    s.parse()
}

fn parse_backend(s: &str) -> Result<Backend, String> {
    Backend::ALL
        .iter()
        .copied()
        .find(|b| b.name() == s)
        .ok_or_else(|| {
            let names: Vec<&str> = Backend::ALL.iter().map(|b| b.name()).collect();
            format!("must be one of {}", names.join(", "))
        })
}

fn parse_name(s: &str) -> Result<String, String> {
    let ok = !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        && !s.starts_with('-');
    if ok {
        Ok(s.to_owned())
    } else {
        Err("must be 1 to 64 letters, digits, `-` or `_`".to_owned())
    }
}

mod banner;
mod run;
use self::run::{create_table, healthcheck, keys_import, keys_rotate, local_ivs, serve};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extracts_token_from_a_playback_url() {
        let ok = |s: &str| token_from_input(s).unwrap();
        assert_eq!(ok("a.b.c"), "a.b.c");
        assert_eq!(ok("https://x.m3u8?token=a.b.c&foo=1"), "a.b.c");
        assert_eq!(ok(" https://x.m3u8?x=1&token=a.b.c "), "a.b.c");
        // As browsers show them: a fragment, percent-encoding.
        assert_eq!(ok("https://x.m3u8?token=a.b.c#t=10"), "a.b.c");
        assert_eq!(ok("https://x.m3u8?token=a%2Eb%2Ec&x=1#t=10"), "a.b.c");
        assert_eq!(ok("/api/video/v1/x.m3u8?token=a.b.c"), "a.b.c");
        let twice = token_from_input("https://x.m3u8?token=a.b.c&token=d.e.f").unwrap_err();
        assert!(twice.contains("2 `token`"), "{twice}");
        let none = token_from_input("https://x.m3u8?x=1#token=a.b.c").unwrap_err();
        assert!(none.contains("no `token`"), "{none}");
    }

    #[test]
    fn cli_definition_is_valid() {
        use clap::CommandFactory as _;
        Cli::command().debug_assert();
    }
}
