//! Layered settings for long-running commands: command line > `MXCERT_*` environment >
//! config file (TOML) > built-in default. Every flag of the subcommand is also a config key
//! (its long name; `-` or `_` alike) and an environment variable (`MXCERT_` + the long name in
//! upper case with `_`), without declaring each one three times: values from the environment and
//! the file are turned into extra `--flag=value` arguments for flags the command line (or clap's
//! own `env`) did not set, and the command line is parsed again.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::parser::ValueSource;
use clap::{ArgAction, ArgMatches, Command};

/// Config file problems; each names the file and the key.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path} is not valid TOML: {message}")]
    Toml { path: PathBuf, message: String },
    #[error("config file {path}: unknown key {key:?} (known: {known})")]
    UnknownKey {
        path: PathBuf,
        key: String,
        known: String,
    },
    #[error("config file {path}: key {key:?}: {message}")]
    BadValue {
        path: PathBuf,
        key: String,
        message: String,
    },
}

/// Environment variable for a flag: `--metrics-addr` → `MXCERT_METRICS_ADDR`.
pub fn env_name(long: &str) -> String {
    format!("MXCERT_{}", long.replace('-', "_").to_ascii_uppercase())
}

/// Extra arguments for the flags of `sub` that `matches` (a first parse of the command line)
/// left at their defaults: from the environment first, then from `file` (TOML). Keys that are
/// not flags of `sub` are errors, so a typo does not go unnoticed. `skip` names flags that must
/// not come from the file (the file's own path).
pub fn layered_args(
    sub: &Command,
    matches: &ArgMatches,
    file: Option<&Path>,
    env: &dyn Fn(&str) -> Option<String>,
    skip: &[&str],
) -> Result<Vec<OsString>, ConfigError> {
    let table = match file {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.to_path_buf(),
                source,
            })?;
            let t: toml::Table = toml::from_str(&text).map_err(|e| ConfigError::Toml {
                path: path.to_path_buf(),
                message: e.to_string(),
            })?;
            Some((path, t))
        }
        None => None,
    };
    let flags: Vec<&clap::Arg> = sub
        .get_arguments()
        .filter(|a| a.get_long().is_some_and(|l| l != "help" && l != "version"))
        .collect();
    if let Some((path, t)) = &table {
        for key in t.keys() {
            let norm = key.replace('_', "-");
            if skip.contains(&norm.as_str())
                || !flags.iter().any(|a| a.get_long() == Some(norm.as_str()))
            {
                let known = flags
                    .iter()
                    .filter_map(|a| a.get_long())
                    .filter(|l| !skip.contains(l))
                    .collect::<Vec<_>>()
                    .join(", ");
                return Err(ConfigError::UnknownKey {
                    path: path.to_path_buf(),
                    key: key.clone(),
                    known,
                });
            }
        }
    }
    let mut out = Vec::new();
    for a in flags {
        let long = a.get_long().unwrap_or_default();
        let id = a.get_id().as_str();
        if matches!(
            matches.value_source(id),
            Some(ValueSource::CommandLine | ValueSource::EnvVariable)
        ) {
            continue;
        }
        let is_flag = matches!(a.get_action(), ArgAction::SetTrue);
        if let Some(v) = env(&env_name(long)) {
            if is_flag {
                if matches!(v.to_ascii_lowercase().as_str(), "1" | "true" | "yes" | "on") {
                    out.push(format!("--{long}").into());
                }
            } else {
                out.push(format!("--{long}={v}").into());
            }
            continue;
        }
        if skip.contains(&long) {
            continue;
        }
        let Some((path, t)) = &table else { continue };
        let v = t.get(long).or_else(|| t.get(&long.replace('-', "_")));
        let Some(v) = v else { continue };
        let bad = |message: String| ConfigError::BadValue {
            path: path.to_path_buf(),
            key: long.to_string(),
            message,
        };
        let scalar = |v: &toml::Value| -> Result<String, ConfigError> {
            match v {
                toml::Value::String(s) => Ok(s.clone()),
                toml::Value::Integer(i) => Ok(i.to_string()),
                toml::Value::Float(f) => Ok(f.to_string()),
                toml::Value::Boolean(b) => Ok(b.to_string()),
                other => Err(bad(format!(
                    "expected a string or number, found {}",
                    other.type_str()
                ))),
            }
        };
        if is_flag {
            match v {
                toml::Value::Boolean(true) => out.push(format!("--{long}").into()),
                toml::Value::Boolean(false) => {}
                other => {
                    return Err(bad(format!(
                        "expected true or false, found {}",
                        other.type_str()
                    )))
                }
            }
            continue;
        }
        match v {
            toml::Value::Array(items) => {
                if !matches!(a.get_action(), ArgAction::Append) {
                    return Err(bad("takes one value, not a list".into()));
                }
                for item in items {
                    out.push(format!("--{long}={}", scalar(item)?).into());
                }
            }
            v => out.push(format!("--{long}={}", scalar(v)?).into()),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{Arg, ArgAction, Command};

    fn cmd() -> Command {
        Command::new("capture")
            .arg(
                Arg::new("iface")
                    .long("iface")
                    .action(ArgAction::Append)
                    .value_delimiter(','),
            )
            .arg(Arg::new("out").long("out").default_value("x.jsonl"))
            .arg(
                Arg::new("idle_timeout")
                    .long("idle-timeout")
                    .default_value("300"),
            )
            .arg(Arg::new("quiet").long("quiet").action(ArgAction::SetTrue))
            .arg(Arg::new("config").long("config"))
    }

    fn layered(cli: &[&str], toml: &str, env: &[(&str, &str)]) -> Result<ArgMatches, ConfigError> {
        let dir = std::env::temp_dir().join(format!("mxcert-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join(format!("{}.toml", toml.len()));
        std::fs::write(&file, toml).unwrap();
        let mut argv: Vec<OsString> = std::iter::once("capture")
            .chain(cli.iter().copied())
            .map(OsString::from)
            .collect();
        let first = cmd().try_get_matches_from(&argv).unwrap();
        let env = |k: &str| {
            env.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        };
        argv.extend(layered_args(
            &cmd(),
            &first,
            Some(&file),
            &env,
            &["config"],
        )?);
        Ok(cmd().try_get_matches_from(argv).unwrap())
    }

    #[test]
    fn cli_beats_env_beats_file_beats_default() {
        let toml =
            "iface = [\"eth0\", \"eth1\"]\nout = \"file.jsonl\"\nidle_timeout = 60\nquiet = true\n";
        let m = layered(
            &["--out", "cli.jsonl"],
            toml,
            &[("MXCERT_IDLE_TIMEOUT", "30")],
        )
        .unwrap();
        assert_eq!(m.get_one::<String>("out").unwrap(), "cli.jsonl");
        assert_eq!(m.get_one::<String>("idle_timeout").unwrap(), "30");
        assert!(m.get_flag("quiet"));
        let ifaces: Vec<&String> = m.get_many::<String>("iface").unwrap().collect();
        assert_eq!(ifaces, ["eth0", "eth1"]);
        let m = layered(&[], "", &[]).unwrap();
        assert_eq!(m.get_one::<String>("out").unwrap(), "x.jsonl");
        assert!(!m.get_flag("quiet"));
    }

    #[test]
    fn unknown_keys_and_bad_types_are_named() {
        let e = layered(&[], "ifcae = \"eth0\"\n", &[])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("unknown key \"ifcae\"") && e.contains("iface"),
            "{e}"
        );
        let e = layered(&[], "config = \"x\"\n", &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown key"), "{e}");
        let e = layered(&[], "out = [\"a\", \"b\"]\n", &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("key \"out\": takes one value"), "{e}");
        let e = layered(&[], "quiet = \"yes\"\n", &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("expected true or false"), "{e}");
    }

    #[test]
    fn env_names_follow_the_long_flag() {
        assert_eq!(env_name("metrics-addr"), "MXCERT_METRICS_ADDR");
    }
}
