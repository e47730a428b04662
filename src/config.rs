//! `serve --config FILE`: every `serve` flag from a TOML file, under its
//! long name (`listen = "127.0.0.1:50051"`, `data-dir = "/srv/fundtrail"`,
//! `insecure-plaintext = true`). A flag on the command line or its
//! environment variable overrides the file (docs/operations.md §6).

use std::ffi::OsString;
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use clap::parser::ValueSource;
use clap::{ArgMatches, Command};

/// The command line to parse: `args` with the settings of the config file
/// named by `serve --config` put in front of the user's own flags, for
/// each flag the user set neither on the command line nor in the
/// environment. `args` as they are when there is no config file.
pub fn with_config_file(command: Command, args: Vec<OsString>) -> Result<Vec<OsString>> {
    let matches = command.clone().try_get_matches_from(&args)?;
    let Some(("serve", serve)) = matches.subcommand() else {
        return Ok(args);
    };
    let Some(path) = serve.get_one::<std::path::PathBuf>("config") else {
        return Ok(args);
    };
    let serve_command = command
        .find_subcommand("serve")
        .expect("the CLI has a serve command");
    let settings = read_settings(path, serve_command, serve)
        .map_err(|e| fundtrail_server::start::StartError::Config(format!("{e:#}")))?;
    // program, "serve", the file's flags, then the user's.
    let position = args
        .iter()
        .position(|arg| arg == "serve")
        .expect("the serve command was parsed from these args");
    let mut merged = args[..=position].to_vec();
    merged.extend(settings);
    merged.extend_from_slice(&args[position + 1..]);
    Ok(merged)
}

/// The flags the file at `path` sets that `given` does not already have.
fn read_settings(path: &Path, serve: &Command, given: &ArgMatches) -> Result<Vec<OsString>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the config file {}", path.display()))?;
    let table: toml::Table =
        toml::from_str(&text).with_context(|| format!("{} is not TOML", path.display()))?;
    let mut flags = Vec::new();
    for (name, value) in table {
        let arg = serve
            .get_arguments()
            .find(|arg| arg.get_long() == Some(name.as_str()))
            .ok_or_else(|| anyhow!("{}: `{name}` is not a flag of serve", path.display()))?;
        if name == "config" {
            bail!("{}: a config file cannot name another", path.display());
        }
        let id = arg.get_id().as_str();
        let set_by_user = matches!(
            given.value_source(id),
            Some(ValueSource::CommandLine | ValueSource::EnvVariable)
        );
        if set_by_user {
            continue;
        }
        match value {
            toml::Value::Boolean(true) => flags.push(format!("--{name}").into()),
            toml::Value::Boolean(false) => {}
            toml::Value::String(text) => {
                flags.push(format!("--{name}").into());
                flags.push(text.into());
            }
            toml::Value::Integer(number) => {
                flags.push(format!("--{name}").into());
                flags.push(number.to_string().into());
            }
            other => bail!(
                "{}: `{name}` must be a string, an integer or a boolean, not {}",
                path.display(),
                other.type_str()
            ),
        }
    }
    Ok(flags)
}
