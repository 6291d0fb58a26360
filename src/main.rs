//! `ivs-playback-auth`: parse the command line, then hand over to the library.

fn main() -> std::process::ExitCode {
    ivs_playback_auth::cli::main()
}
